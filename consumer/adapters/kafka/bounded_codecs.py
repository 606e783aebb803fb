"""A cap on how far kafka-python inflates one record batch: a compressed bomb raises, never allocates.

kafka-python (3.0.x) inflates a compressed batch whole, with no limit: a ~200 KB gzip batch the
broker accepts became a 200 MB value (consumer peak 268 -> 1,087 MB), so a few such records
OOM-kill a service, which then reads them again on restart. :func:`install` replaces the codec
functions its record modules call by bounded ones that stop at ``limit + 1`` bytes of output and
raise :class:`DecompressionBombError`, carrying the batch's topic, partition and offsets (added on
the way up by thin wrappers around the batch and the fetcher's partition records), so the reader
can seek past the batch and leave a record of it. Process-wide, like kafka-python's modules.
The same figure bounds what one poll inflates in all (:mod:`.poll_budget`).
"""

from __future__ import annotations

import functools
import importlib
import io
import logging
import struct
import zlib
from typing import Any

import kafka.codec as _codec
import kafka.record.default_records as _v2
import kafka.record.legacy_records as _legacy
from kafka import TopicPartition
from kafka.consumer.fetcher import Fetcher

from consumer.adapters.kafka import poll_budget
from consumer.adapters.kafka.poll_budget import PollBudgetSpentError
from consumer.adapters.kafka.unread_batches import (
    UnreadableRecordError,
    UnreadBatchError,
    install_record_guard,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES",
    "DecompressionBombError",
    "bounded_gzip_decode",
    "bounded_lz4_decode",
    "bounded_snappy_decode",
    "bounded_zstd_decode",
    "current_limit",
    "install",
    "poll_skipping",
    "skip_past",
]

DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES = 64 * 1024 * 1024
_GZIP_WBITS = zlib.MAX_WBITS | 32  # zlib detects the gzip (or zlib) header itself
_XERIAL_HEADER_BYTES = 16
_limit = DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES


class DecompressionBombError(UnreadBatchError):
    """A compressed record batch would inflate beyond the cap; nothing of it was decoded."""

    reason = "decompression_bomb"

    def __init__(self, limit: int, codec: str) -> None:
        super().__init__(f"{codec} record batch inflates beyond {limit} bytes")
        self.limit = limit
        self.codec = codec
        self.compressed_bytes: int | None = None

    def describe(self) -> str:
        """One line for logs and dead letters: where the batch is and why it was skipped."""
        where = f"{self.topic}[{self.partition}]" if self.topic is not None else "a partition"
        count = (self.last_offset or 0) - (self.first_offset or 0) + 1
        size = f", {self.compressed_bytes} bytes compressed" if self.compressed_bytes else ""
        return (
            f"{self.codec} record batch of {where} at offsets {self.first_offset}..{self.last_offset} "
            f"({count} record(s){size}) inflates beyond max_decompressed_batch_bytes={self.limit}: skipped unread"
        )


def bounded_gzip_decode(payload: Any, limit: int | None = None) -> bytes:
    """gzip (one or more members) inflated to at most ``limit`` bytes, else DecompressionBombError.

    Each member is inflated with ``max_length`` = what is left of the cap plus one byte: reaching
    it means the batch is over the cap, and no more than that was ever allocated.
    """
    cap = _limit if limit is None else limit
    chunks: list[bytes] = []
    total = 0
    data: Any = payload
    while data:
        inflater = zlib.decompressobj(_GZIP_WBITS)
        chunk = inflater.decompress(data, cap + 1 - total)  # max_length >= 1: 0 would mean unbounded
        total += len(chunk)
        if total > cap:
            raise DecompressionBombError(cap, "gzip")
        if not inflater.eof:
            raise EOFError("compressed gzip data ended before the end-of-stream marker")
        chunks.append(chunk)
        data = inflater.unused_data.lstrip(b"\x00")  # members may be followed by zero padding
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _varint(data: bytes, pos: int = 0) -> int:
    """snappy's little-endian base-128 preamble: the block's uncompressed length."""
    value = shift = 0
    for byte in data[pos : pos + 10]:
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
        shift += 7
    raise ValueError("snappy block without a valid length preamble")


def bounded_snappy_decode(payload: bytes, limit: int | None = None) -> bytes:
    """snappy (raw or xerial-framed): each block's declared length is checked before it is inflated."""
    cap = _limit if limit is None else limit
    total = 0
    if _codec._detect_xerial_stream(payload):
        pos = _XERIAL_HEADER_BYTES
        while pos + 4 <= len(payload):
            (size,) = struct.unpack_from("!i", payload, pos)
            total += _varint(payload, pos + 4)
            pos += 4 + size
    else:
        total = _varint(payload)
    if total > cap:
        raise DecompressionBombError(cap, "snappy")
    return bytes(_codec.snappy_decode(payload))


def bounded_lz4_decode(payload: bytes, limit: int | None = None) -> bytes:
    """LZ4 frame inflated to at most ``limit`` bytes (python-lz4's frame decompressor, max_length)."""
    cap = _limit if limit is None else limit
    frame: Any = importlib.import_module("lz4.frame")  # optional: kafka-python refuses lz4 without it
    inflater = frame.LZ4FrameDecompressor()
    out = bytes(inflater.decompress(payload, max_length=cap + 1))
    if len(out) > cap or not inflater.eof:
        raise DecompressionBombError(cap, "lz4")
    return out


def bounded_zstd_decode(payload: bytes, limit: int | None = None) -> bytes:
    """zstd (every frame) inflated to at most ``limit`` bytes."""
    cap = _limit if limit is None else limit
    zstandard: Any = importlib.import_module("zstandard")  # optional, like lz4
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload), read_across_frames=True)
    with reader:
        out = bytes(reader.read(cap + 1))
    if len(out) > cap:
        raise DecompressionBombError(cap, "zstd")
    return out


def current_limit() -> int:
    """The cap in force (bytes of one inflated record batch)."""
    return _limit


def skip_past(consumer: Any, exc: UnreadBatchError) -> tuple[str, int, int, int]:
    """Move ``consumer`` (kafka-python) past the batch ``exc`` names and say so at ERROR.

    Returns ``(topic, partition, first_offset, last_offset)``. An error that lacks them did not
    come through the fetcher (no reader can skip it): raised again.
    """
    topic, partition, first, last = exc.topic, exc.partition, exc.first_offset, exc.last_offset
    if topic is None or partition is None or first is None or last is None:
        raise exc
    consumer.seek(TopicPartition(topic, partition), last + 1)
    log.error(
        "%s",
        exc.describe(),
        extra={"topic": topic, "partition": partition, "offset": last, "first_offset": first},
    )
    return topic, partition, first, last


def poll_skipping(consumer: Any, timeout_ms: int) -> dict[Any, list[Any]]:
    """``consumer.poll`` for readers that keep no record of what they skip (status tails): a batch
    over the cap, or holding a record that cannot be parsed, is skipped (ERROR) and this poll
    returns nothing."""
    try:
        polled: dict[Any, list[Any]] = consumer.poll(timeout_ms=timeout_ms)
    except UnreadBatchError as exc:
        skip_past(consumer, exc)
        return {}
    return polled


def install(limit: int | None = None) -> None:
    """Bound every codec kafka-python's record batches use to ``limit`` bytes (``None``: keep the
    limit in force). Idempotent; the last limit given holds for the whole process."""
    global _limit  # noqa: PLW0603 (kafka-python's record modules are process-wide too)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, not {limit}")
    _limit = _limit if limit is None else limit
    if getattr(_v2, "_stockwatch_bounded", False):
        return
    for module in (_v2, _legacy):
        module.gzip_decode = _within_poll_budget(bounded_gzip_decode)
        module.snappy_decode = _within_poll_budget(bounded_snappy_decode)
        module.lz4_decode = _within_poll_budget(bounded_lz4_decode)
    _v2.zstd_decode = _within_poll_budget(bounded_zstd_decode)
    _codec.lz4_decode = _within_poll_budget(bounded_lz4_decode)  # lz4_decode_old_kafka (magic 0)
    _wrap_batches()
    install_record_guard()  # a record that cannot be parsed names its batch, to be skipped like a bomb
    _v2._stockwatch_bounded = True


def _within_poll_budget(decode: Any) -> Any:
    """``decode`` bounded by what is left of the poll's budget too (:mod:`.poll_budget`)."""

    @functools.wraps(decode)
    def within_budget(payload: Any, limit: int | None = None) -> bytes:
        cap = _limit if limit is None else limit
        allowed, budget_bound = poll_budget.batch_limit(cap, _limit)
        try:
            out: bytes = decode(payload, allowed)
        except DecompressionBombError:
            if budget_bound:  # over what is left of the poll's budget, not (yet) over the cap
                raise PollBudgetSpentError(f"batch inflates beyond the {allowed} bytes left") from None
            raise
        poll_budget.inflated(len(out))
        return out

    return within_budget


def _wrap_batches() -> None:
    """Add the batch's offsets (record modules) and the partition (fetcher) to a DecompressionBombError."""
    v2_inflate = _v2.DefaultRecordBatch._maybe_uncompress
    legacy_inflate = _legacy.LegacyRecordBatch._decompress
    take = Fetcher.PartitionRecords.take

    @functools.wraps(v2_inflate)
    def v2_bounded(self: Any) -> None:
        try:
            v2_inflate(self)
        except DecompressionBombError as exc:
            exc.first_offset, exc.last_offset = self.base_offset, self.last_offset
            exc.compressed_bytes = self.size_in_bytes
            raise

    @functools.wraps(legacy_inflate)
    def legacy_bounded(self: Any, key_offset: int) -> Any:
        try:
            return legacy_inflate(self, key_offset)
        except DecompressionBombError as exc:  # a v0/v1 wrapper's offset is its last inner record's
            exc.first_offset = exc.last_offset = self._offset
            exc.compressed_bytes = len(self._buffer)
            raise

    @functools.wraps(take)
    def take_bounded(self: Any, n: int | None = None) -> Any:
        start, records = self.next_fetch_offset, self.record_iterator
        counted = self.record_iterator = records and poll_budget.counting(records)
        try:
            taken = take(self, n)
        except UnreadBatchError as exc:  # a bomb, or a record that cannot be parsed
            exc.topic, exc.partition = self.topic_partition.topic, self.topic_partition.partition
            if isinstance(exc, UnreadableRecordError) and exc.first_offset is not None:
                # the records before the one that failed were handed out already: not skipped
                exc.first_offset = max(exc.first_offset, min(self.next_fetch_offset, exc.last_offset or 0))
            self.drain()  # its iterator is dead: kept (the error dropped by a pause), poll would spin on it
            raise
        except PollBudgetSpentError:  # nothing taken: stay where the poll found the partition
            self.drain()
            self.next_fetch_offset = start
            return []
        finally:
            if self.record_iterator is counted:
                self.record_iterator = records
        if isinstance(self._next_inline_exception, PollBudgetSpentError):
            self.drain()  # the rest is fetched again from past the records taken (the position)
        return taken

    _v2.DefaultRecordBatch._maybe_uncompress = v2_bounded
    _legacy.LegacyRecordBatch._decompress = legacy_bounded
    Fetcher.PartitionRecords.take = take_bounded
    Fetcher.fetched_records = poll_budget.poll_scope(Fetcher.fetched_records)
