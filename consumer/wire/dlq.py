"""Dead-letter records: why a message went to ``dlq_topic``, where it came from, who put it there — pure.

The contract (schema ``docs/schemas/dlq-headers.schema.json``, rendered from :class:`DlqHeaders`):

* **key and value** are the original bytes, unchanged (a keyless tombstone gets an empty value so
  it can be produced). A *reduced* dead letter (its full copy was refused by the broker, see
  ``consumer/scoring/poison.py``) keeps a bounded prefix and says what was cut in ``dlq.truncated``.
* **headers**: StockWatch's own ``dlq.*`` headers come *first*, then the original headers in their
  order (a null value made empty, so the record can be produced). An original header whose name
  starts with ``dlq.`` (any case) is renamed ``original.<name>``, so every ``dlq.*`` header of a
  dead letter was written by StockWatch and occurs once: a producer cannot plant a ``dlq.reason``
  that a reader (first or last occurrence) would take for StockWatch's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DLQ_HEADERS",
    "DLQ_HEADER_DEAD_LETTERED_AT",
    "DLQ_HEADER_ERROR",
    "DLQ_HEADER_GROUP",
    "DLQ_HEADER_ORIGINAL_SIZE",
    "DLQ_HEADER_REASON",
    "DLQ_HEADER_SERVICE",
    "DLQ_HEADER_SOURCE_FIRST_OFFSET",
    "DLQ_HEADER_SOURCE_OFFSET",
    "DLQ_HEADER_SOURCE_PARTITION",
    "DLQ_HEADER_SOURCE_TIMESTAMP",
    "DLQ_HEADER_SOURCE_TOPIC",
    "DLQ_HEADER_TRUNCATED",
    "DLQ_PREFIX",
    "MAX_ERROR_HEADER_CHARS",
    "ORIGINAL_PREFIX",
    "DlqHeaders",
    "DlqReason",
    "dead_lettered_at",
    "dlq_headers",
    "is_own_header",
    "original_headers",
]

MAX_ERROR_HEADER_CHARS = 1000

DLQ_PREFIX = "dlq."
ORIGINAL_PREFIX = "original."  # prepended to an original header named dlq.*
DLQ_HEADER_REASON = "dlq.reason"
DLQ_HEADER_ERROR = "dlq.error"
DLQ_HEADER_SOURCE_TOPIC = "dlq.source.topic"
DLQ_HEADER_SOURCE_PARTITION = "dlq.source.partition"
DLQ_HEADER_SOURCE_OFFSET = "dlq.source.offset"
DLQ_HEADER_SOURCE_FIRST_OFFSET = "dlq.source.first_offset"  # a batch skipped unread: its first offset
DLQ_HEADER_SOURCE_TIMESTAMP = "dlq.source.timestamp"
DLQ_HEADER_DEAD_LETTERED_AT = "dlq.dead_lettered_at"
DLQ_HEADER_SERVICE = "dlq.service"
DLQ_HEADER_GROUP = "dlq.group"
DLQ_HEADER_TRUNCATED = "dlq.truncated"  # reduced dead letters: what was cut ("value,key,headers")
DLQ_HEADER_ORIGINAL_SIZE = "dlq.original.size"  # reduced dead letters: bytes of the original value

DLQ_HEADERS = (
    DLQ_HEADER_REASON,
    DLQ_HEADER_ERROR,
    DLQ_HEADER_SOURCE_TOPIC,
    DLQ_HEADER_SOURCE_PARTITION,
    DLQ_HEADER_SOURCE_OFFSET,
    DLQ_HEADER_SOURCE_TIMESTAMP,
    DLQ_HEADER_DEAD_LETTERED_AT,
    DLQ_HEADER_SERVICE,
    DLQ_HEADER_GROUP,
    DLQ_HEADER_SOURCE_FIRST_OFFSET,
    DLQ_HEADER_TRUNCATED,
    DLQ_HEADER_ORIGINAL_SIZE,
)
"""Every header StockWatch may write on a dead letter (the only ``dlq.*`` names a dead letter carries)."""


class DlqReason(StrEnum):
    """Why a message went to the dead-letter topic (the ``dlq.reason`` header)."""

    OVERSIZE = "oversize"  # value longer than max_message_bytes; not decoded at all
    EMPTY = "empty"  # null (tombstone) or zero-length value
    INVALID_JSON = "invalid_json"  # not UTF-8 JSON (orjson is strict: no NaN literals)
    NOT_AN_OBJECT = "not_an_object"  # JSON, but an array / string / number / null
    INVALID_ITEM = "invalid_item"  # an object that fails item validation (missing id, NaN, booleans...)
    MISSING_FIELD = "missing_field"  # `default` detector: an unknown item's update lacks a number
    FUTURE_TIME = "future_time"  # `default` detector: occurred_at more than future_skew_s ahead of now
    # a compressed record batch that would inflate beyond max_decompressed_batch_bytes: skipped unread,
    # one dead letter (empty value) for the whole batch, dlq.source.first_offset..dlq.source.offset
    DECOMPRESSION_BOMB = "decompression_bomb"
    # a record batch holding a record the client cannot parse (e.g. a header key that is not UTF-8):
    # skipped unread like a bomb, one dead letter (empty value) for the whole batch
    UNREADABLE_RECORD = "unreadable_record"


def is_own_header(name: str) -> bool:
    """True for a header StockWatch wrote (``dlq.*``); original headers never match once renamed."""
    return name.startswith(DLQ_PREFIX)


def original_headers(headers: Sequence[tuple[str, bytes | None]]) -> list[tuple[str, bytes]]:
    """The input record's headers as a dead letter carries them: ``dlq.*`` names become ``original.dlq.*``;
    a null value becomes empty (kafka-python's ``send`` refuses a null header value: TypeError)."""
    return [
        (ORIGINAL_PREFIX + k if k[: len(DLQ_PREFIX)].lower() == DLQ_PREFIX else k, b"" if v is None else v)
        for k, v in headers
    ]


def dead_lettered_at(now: datetime | None = None) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-12-01T22:50:40.123+00:00``."""
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")


def dlq_headers(
    reason: DlqReason,
    error: str,
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int | None,
    service: str,
    group: str,
    at: str | None = None,
    original: Sequence[tuple[str, bytes | None]] = (),
    first_offset: int | None = None,
) -> list[tuple[str, bytes]]:
    """Headers of a dead-letter record: StockWatch's ``dlq.*`` first, then the original ones (renamed)."""
    return [
        (DLQ_HEADER_REASON, reason.value.encode()),
        (DLQ_HEADER_ERROR, error[:MAX_ERROR_HEADER_CHARS].encode("utf-8", "replace")),
        (DLQ_HEADER_SOURCE_TOPIC, topic.encode()),
        (DLQ_HEADER_SOURCE_PARTITION, str(partition).encode()),
        (DLQ_HEADER_SOURCE_OFFSET, str(offset).encode()),
        (DLQ_HEADER_SOURCE_TIMESTAMP, b"" if timestamp is None else str(timestamp).encode()),
        (DLQ_HEADER_DEAD_LETTERED_AT, (at or dead_lettered_at()).encode()),
        (DLQ_HEADER_SERVICE, service.encode()),
        (DLQ_HEADER_GROUP, group.encode()),
        *([] if first_offset is None else [(DLQ_HEADER_SOURCE_FIRST_OFFSET, str(first_offset).encode())]),
        *original_headers(original),
    ]


_COUNT = r"^[0-9]+$"
_FOREIGN_DLQ = r"^[dD][lL][qQ]\."  # a dlq.* name (any case) not in DLQ_HEADERS cannot occur


class DlqHeaders(BaseModel):
    """The headers of a dead-letter record, each value decoded as UTF-8 text.

    StockWatch's ``dlq.*`` headers come first, each once; then the original record's headers in
    their order, an original ``dlq.*`` name renamed ``original.dlq.*``. The record's key and value
    are the original bytes, unchanged (a keyless tombstone gets an empty value); a reduced dead
    letter (``dlq.truncated`` present) keeps the first 64 KiB of the value and 1 KiB of the key.
    """

    model_config = ConfigDict(  # aliases spelled out: mypy wants literals
        extra="allow",
        frozen=True,
        json_schema_extra={
            "propertyNames": {"anyOf": [{"not": {"pattern": _FOREIGN_DLQ}}, {"enum": list(DLQ_HEADERS)}]}
        },
    )
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
    source_first_offset: str | None = Field(
        default=None,
        alias="dlq.source.first_offset",
        pattern=_COUNT,
        description="A record batch skipped unread (`decompression_bomb`, `unreadable_record`) only: its first offset; "
        "`dlq.source.offset` is its last.",
    )
    source_timestamp: str = Field(
        alias="dlq.source.timestamp",
        pattern=r"^(-?[0-9]+)?$",
        description="The record's timestamp (ms since the epoch); empty when it had none.",
    )
    dead_lettered_at: datetime = Field(
        alias="dlq.dead_lettered_at", description="When StockWatch dead-lettered it (ISO 8601, UTC)."
    )
    service: str = Field(
        alias="dlq.service", min_length=1, description="Which service did it, e.g. `stockwatch-consume`."
    )
    group: str = Field(alias="dlq.group", description="The consumer group of that service (`group_id`).")
    truncated: str | None = Field(
        default=None,
        alias="dlq.truncated",
        pattern=r"^((value|key|headers)(,(value|key|headers))*)?$",
        description="Reduced dead letters only: what was cut (`value`, `key`, `headers`; comma separated).",
    )
    original_size: str | None = Field(
        default=None,
        alias="dlq.original.size",
        pattern=_COUNT,
        description="Reduced dead letters only: bytes of the original value.",
    )
