"""The settings of what travels with each anomaly event: input fields, input headers, report links.

:class:`ContextFields` holds the flat fields (``STOCKWATCH_PROPAGATE_HEADERS``, …); ``Settings``
inherits them, so they live here rather than in the 300-line settings module. :class:`ContextSettings`
is their slice (``settings.context``), read by ``consumer.wire.context.EventContext``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from config.groups import Slice

__all__ = ["DEFAULT_PROPAGATE_HEADERS", "ContextFields", "ContextSettings", "header_names"]

DEFAULT_PROPAGATE_HEADERS = "traceparent,trace-id,correlation-id"
VERSION_FIELD = "{version}"
OWN_HEADER_PREFIX = "dlq."  # consumer.wire.dlq.DLQ_PREFIX (config imports nothing of consumer)


def header_names(text: str) -> tuple[str, ...]:
    """The header names of a comma list, lower-cased, in order, without blanks or repeats."""
    return tuple(dict.fromkeys(name.strip().lower() for name in text.split(",") if name.strip()))


class ContextFields(BaseModel):
    """The flat fields (inherited by ``config.Settings``)."""

    propagate_headers: str = Field(
        default=DEFAULT_PROPAGATE_HEADERS,
        description="Input record headers copied onto its anomaly event's record (comma list, names "
        "matched case-insensitively; empty = none).",
    )
    propagate_header_max_bytes: int = Field(
        default=1024, ge=1, le=65_536, description="A propagated header whose value is longer is dropped."
    )
    attributes_max_fields: int = Field(
        default=32,
        ge=0,
        le=1000,
        description="Input fields the detector does not read, carried in the anomaly event's "
        "`item.attributes`: at most this many (0 = none).",
    )
    attributes_max_bytes: int = Field(
        default=4096,
        ge=2,
        le=65_536,
        description="… and at most this many bytes of JSON; fields over either bound are left out and "
        "`item.attributes_truncated` is true.",
    )
    report_url_template: str | None = Field(
        default=None,
        description="URL of a model version's report (`{version}` is replaced), in each anomaly event's "
        "`links.report` when the version has a report.png; unset: its file:// URI in the model directory.",
    )

    @field_validator("propagate_headers")
    @classmethod
    def _not_ours(cls, value: str) -> str:
        own = [name for name in header_names(value) if name.startswith(OWN_HEADER_PREFIX)]
        if own:  # a planted one would pass for StockWatch's (consumer.wire.dlq.is_own_header)
            raise ValueError(f"{', '.join(own)}: {OWN_HEADER_PREFIX}* headers are StockWatch's own")
        return value

    @field_validator("report_url_template")
    @classmethod
    def _has_version(cls, value: str | None) -> str | None:
        if value is not None and VERSION_FIELD not in value:
            raise ValueError(f"must contain {VERSION_FIELD} (replaced by the model version)")
        return value


class ContextSettings(Slice):
    """What travels with each anomaly event (see :class:`ContextFields`)."""

    propagate_headers: str
    propagate_header_max_bytes: int
    attributes_max_fields: int
    attributes_max_bytes: int
    report_url_template: str | None

    @property
    def header_names(self) -> tuple[str, ...]:
        return header_names(self.propagate_headers)
