"""Dead-letter records: why a message went to ``dlq_topic`` and where it came from — pure, no I/O.

A dead-letter record keeps the original key and value bytes and the original headers, then adds the
``dlq.*`` headers below (UTF-8 text). :class:`DlqHeaders` documents them as a JSON object (header name
-> decoded value); its schema is ``docs/schemas/dlq-headers.schema.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DLQ_HEADER_ERROR",
    "DLQ_HEADER_REASON",
    "DLQ_HEADER_SOURCE_OFFSET",
    "DLQ_HEADER_SOURCE_PARTITION",
    "DLQ_HEADER_SOURCE_TIMESTAMP",
    "DLQ_HEADER_SOURCE_TOPIC",
    "MAX_ERROR_HEADER_CHARS",
    "DlqHeaders",
    "DlqReason",
    "dlq_headers",
]

MAX_ERROR_HEADER_CHARS = 1000

DLQ_HEADER_REASON = "dlq.reason"
DLQ_HEADER_ERROR = "dlq.error"
DLQ_HEADER_SOURCE_TOPIC = "dlq.source.topic"
DLQ_HEADER_SOURCE_PARTITION = "dlq.source.partition"
DLQ_HEADER_SOURCE_OFFSET = "dlq.source.offset"
DLQ_HEADER_SOURCE_TIMESTAMP = "dlq.source.timestamp"


class DlqReason(StrEnum):
    """Why a message went to the dead-letter topic (the ``dlq.reason`` header)."""

    OVERSIZE = "oversize"  # value longer than max_message_bytes; not decoded at all
    EMPTY = "empty"  # null (tombstone) or zero-length value
    INVALID_JSON = "invalid_json"  # not UTF-8 JSON (orjson is strict: no NaN literals)
    NOT_AN_OBJECT = "not_an_object"  # JSON, but an array / string / number / null
    INVALID_ITEM = "invalid_item"  # an object that fails item validation (missing id, NaN, booleans...)
    MISSING_FIELD = "missing_field"  # `default` detector: an unknown item's update lacks a number


def dlq_headers(
    reason: DlqReason,
    error: str,
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int | None,
    original: Sequence[tuple[str, bytes]] = (),
) -> list[tuple[str, bytes]]:
    """Headers of a dead-letter record: the original headers, then reason and source coordinates."""
    headers = list(original)
    headers += [
        (DLQ_HEADER_REASON, reason.value.encode()),
        (DLQ_HEADER_ERROR, error[:MAX_ERROR_HEADER_CHARS].encode("utf-8", "replace")),
        (DLQ_HEADER_SOURCE_TOPIC, topic.encode()),
        (DLQ_HEADER_SOURCE_PARTITION, str(partition).encode()),
        (DLQ_HEADER_SOURCE_OFFSET, str(offset).encode()),
        (DLQ_HEADER_SOURCE_TIMESTAMP, b"" if timestamp is None else str(timestamp).encode()),
    ]
    return headers


_COUNT = r"^[0-9]+$"


class DlqHeaders(BaseModel):
    """The headers of a dead-letter record, each value decoded as UTF-8 text.

    The record's key and value are the original bytes, unchanged (a keyless tombstone gets an empty
    value so it can be produced). The original headers come first and are kept as they were.
    """

    model_config = ConfigDict(extra="allow", frozen=True)  # aliases spelled out: mypy wants literals
    __pydantic_extra__: dict[str, str]  # the original record's headers

    reason: DlqReason = Field(alias="dlq.reason")
    error: str = Field(
        alias="dlq.error",
        max_length=MAX_ERROR_HEADER_CHARS,
        description="Human-readable reason, e.g. `price: must be a finite number, got NaN`.",
    )
    source_topic: str = Field(alias="dlq.source.topic", description="Where the record was read.")
    source_partition: str = Field(alias="dlq.source.partition", pattern=_COUNT)
    source_offset: str = Field(alias="dlq.source.offset", pattern=_COUNT)
    source_timestamp: str = Field(
        alias="dlq.source.timestamp",
        pattern=r"^(-?[0-9]+)?$",
        description="The record's timestamp (ms since the epoch); empty when it had none.",
    )
