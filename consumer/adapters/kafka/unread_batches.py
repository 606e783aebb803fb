"""Record batches a kafka-python reader skips unread, and why: a decompression bomb
(:mod:`.bounded_codecs`) or a record that cannot be parsed.

kafka-python raises ``CorruptRecordError`` for a record it cannot parse (a header key that is not
UTF-8, a truncated field) and keeps its position before it: every later poll meets the same record,
so one such record stopped `stockwatch consume` (and, restarted, stopped it again). Wrapped here,
that error names its batch (:class:`UnreadableRecordError`, still a ``CorruptRecordError`` for
readers that catch those), so a reader seeks past the batch and leaves a record of it, as for a bomb.
A batch whose CRC does not match its bytes (damaged on a broker's disk: a producer's is checked on
the way in) is the same case: kafka-python raises a bare ``CorruptRecordError`` there, before the
batch is parsed, and would meet it again at every poll.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import kafka.record.default_records as _v2
from kafka.errors import CorruptRecordError

__all__ = ["UnreadBatchError", "UnreadableRecordError", "install_record_guard"]


class UnreadBatchError(Exception):
    """A record batch a reader must skip unread. ``topic``/``partition`` are set once the error
    passed the fetcher, ``first_offset``/``last_offset`` (the batch's base and last offsets) once
    it passed the batch."""

    reason: ClassVar[str]  # the dead letter's ``dlq.reason``

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.topic: str | None = None
        self.partition: int | None = None
        self.first_offset: int | None = None
        self.last_offset: int | None = None

    def where(self) -> str:
        """The batch's partition and offsets, in words."""
        part = f"{self.topic}[{self.partition}]" if self.topic is not None else "a partition"
        count = (self.last_offset or 0) - (self.first_offset or 0) + 1
        return (
            f"record batch of {part} at offsets {self.first_offset}..{self.last_offset} ({count} record(s))"
        )

    def describe(self) -> str:
        """One line for logs and dead letters."""
        return f"{self.where()}: {self}: skipped unread"


class UnreadableRecordError(UnreadBatchError, CorruptRecordError):  # type: ignore[misc]  # kafka is untyped
    """A record of the batch cannot be parsed (kafka-python's ``CorruptRecordError``)."""

    reason = "unreadable_record"

    def describe(self) -> str:
        return f"{self.where()} holds a record that cannot be parsed ({self.args[0]}): skipped unread"


def _named(batch: Any, message: str) -> UnreadableRecordError:
    error = UnreadableRecordError(message)
    error.first_offset, error.last_offset = batch.base_offset, batch.last_offset
    return error


def install_record_guard() -> None:
    """Make kafka-python's v2 batches name themselves in a parse error, and raise it for a CRC that
    does not match (``validate_crc`` never returns False then). Idempotent, process-wide."""
    if getattr(_v2, "_stockwatch_record_guard", False):
        return
    parse = _v2.DefaultRecordBatch.__next__
    validate_crc = _v2.DefaultRecordBatch.validate_crc

    @functools.wraps(parse)
    def parse_guarded(self: Any) -> Any:
        try:
            return parse(self)
        except UnreadBatchError:
            raise
        except CorruptRecordError as exc:  # kafka-python's own, incl. a header key that is not UTF-8
            raise _named(self, str(exc)) from exc

    @functools.wraps(validate_crc)
    def crc_guarded(self: Any) -> bool:
        if validate_crc(self):
            return True
        raise _named(self, f"its CRC-32C {self.crc:#010x} does not match its bytes")

    _v2.DefaultRecordBatch.__next__ = parse_guarded
    _v2.DefaultRecordBatch.validate_crc = crc_guarded
    _v2._stockwatch_record_guard = True
