"""A v2 record batch with a record kafka-python cannot parse names its offsets (pure: bytes in memory)."""

from __future__ import annotations

import pytest
from kafka import TopicPartition
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from consumer.adapters.kafka.bounded_codecs import DecompressionBombError, install
from consumer.adapters.kafka.unread_batches import (
    UnreadableRecordError,
    UnreadBatchError,
    install_record_guard,
)


class NotUtf8(str):
    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe-bad"


def batch_bytes(base_offset: int, headers: list[list[tuple[str, bytes]]]) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for i, h in enumerate(headers):
        builder.append(i, timestamp=1, key=b"k", value=b"{}", headers=h)
    data = bytearray(builder.build())
    data[0:8] = base_offset.to_bytes(8, "big")  # the broker assigns the base offset
    return bytes(data)


def test_a_record_that_cannot_be_parsed_names_its_batch_and_is_still_a_corrupt_record_error() -> None:
    install_record_guard()
    data = batch_bytes(40, [[], [(NotUtf8("trace"), b"1")], []])
    batch = DefaultRecordBatch(data)
    got = []
    with pytest.raises(UnreadableRecordError) as caught:
        for record in batch:
            got.append(record.offset)
    assert got == [40]  # the record before it was read
    error = caught.value
    assert isinstance(error, CorruptRecordError) and isinstance(error, UnreadBatchError)
    assert (error.first_offset, error.last_offset) == (40, 42)
    assert error.reason == "unreadable_record"
    assert "cannot be parsed" in error.describe() and "40..42" in error.describe()


def test_a_readable_batch_is_read_whole() -> None:
    install_record_guard()
    batch = DefaultRecordBatch(batch_bytes(7, [[("trace", b"1")], []]))
    assert [(r.offset, r.headers) for r in batch] == [(7, [("trace", b"1")]), (8, [])]


def test_a_bomb_is_an_unread_batch_with_its_own_reason() -> None:
    assert issubclass(DecompressionBombError, UnreadBatchError)
    assert DecompressionBombError(10, "gzip").reason == "decompression_bomb"


def test_a_partition_whose_batch_cannot_be_parsed_is_drained() -> None:
    # kept undrained, its dead iterator yields nothing forever: a fetcher that got it back after a
    # pause (the error dropped meanwhile) spun in poll, taking nothing and never fetching again
    install()
    data = batch_bytes(0, [[(NotUtf8("trace"), b"1")], []])
    part = Fetcher.PartitionRecords(0, TopicPartition("in", 0), MemoryRecords(data))
    with pytest.raises(UnreadableRecordError):
        part.take(10)
    assert not part


def test_a_batch_whose_crc_does_not_match_is_skipped_like_one_that_cannot_be_parsed() -> None:
    # damaged on the broker's disk: kafka-python raised a bare CorruptRecordError before parsing
    # the batch (no offsets to skip past), and met it again at every poll
    install()
    data = bytearray(batch_bytes(20, [[], [], []]))
    data[-3] ^= 0x55  # a byte of the last record's value: covered by the batch CRC
    part = Fetcher.PartitionRecords(0, TopicPartition("in", 0), MemoryRecords(bytes(data)), check_crcs=True)
    with pytest.raises(UnreadableRecordError) as caught:
        part.take(10)
    assert (caught.value.first_offset, caught.value.last_offset) == (20, 22)
    assert caught.value.topic == "in" and caught.value.partition == 0
    assert "CRC" in caught.value.describe() and "20..22" in caught.value.describe()
    assert not part


def test_an_intact_batch_passes_its_crc_check() -> None:
    install()
    part = Fetcher.PartitionRecords(
        0, TopicPartition("in", 0), MemoryRecords(batch_bytes(3, [[], []])), check_crcs=True
    )
    assert [r.offset for r in part.take(10)] == [3, 4]
