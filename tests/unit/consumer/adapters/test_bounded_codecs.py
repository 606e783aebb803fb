"""The bounded codecs: a compressed bomb raises early, without ever holding its inflated size."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import zlib

import kafka.record.default_records as v2
import pytest
from kafka.consumer.fetcher import Fetcher
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.structs import TopicPartition

from consumer.adapters.kafka import bounded_codecs
from consumer.adapters.kafka.bounded_codecs import (
    DecompressionBombError,
    bounded_gzip_decode,
    bounded_snappy_decode,
)

MIB = 1 << 20


def _gzip_zeros(n_bytes: int) -> bytes:
    """A gzip member of ``n_bytes`` zeros, compressed in 1 MiB steps (never held whole)."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MIB)
    parts = [deflater.compress(block) for _ in range(n_bytes // MIB)]
    return b"".join([*parts, deflater.flush()])


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _gzip_zeros(96 * MIB)  # ~95 KB compressed


def test_gzip_round_trip_of_ordinary_data() -> None:
    data = b'{"item_id": "sku-1", "quantity": 3}' * 1000
    assert bounded_gzip_decode(gzip.compress(data), 1 * MIB) == data


def test_gzip_of_several_members_and_zero_padding_is_read_whole() -> None:
    payload = gzip.compress(b"first ") + gzip.compress(b"second") + bytes(8)
    assert bounded_gzip_decode(payload, MIB) == b"first second"


def test_gzip_exactly_at_the_cap_is_accepted_one_byte_more_is_not() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    assert len(bounded_gzip_decode(gzip.compress(data), len(data))) == len(data)
    with pytest.raises(DecompressionBombError):
        bounded_gzip_decode(gzip.compress(data), len(data) - 1)


def test_gzip_cap_counts_every_member() -> None:
    member = gzip.compress(bytes(600_000))
    with pytest.raises(DecompressionBombError):
        bounded_gzip_decode(member + member, MIB)


def test_gzip_bomb_raises_without_allocating_its_output(bomb: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(DecompressionBombError) as caught:
            bounded_gzip_decode(bomb, 2 * MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.limit == 2 * MIB
    assert peak < 8 * MIB  # the bomb inflates to 96 MiB


def test_truncated_gzip_is_an_error_not_a_short_value() -> None:
    with pytest.raises(EOFError):
        bounded_gzip_decode(gzip.compress(b"x" * 10_000)[:-20], MIB)


def _snappy_block_header(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def test_snappy_declared_length_over_the_cap_raises_before_inflating() -> None:
    raw = _snappy_block_header(100 * MIB) + b"\x00" * 16  # the library is never reached
    with pytest.raises(DecompressionBombError):
        bounded_snappy_decode(raw, MIB)
    xerial = struct.pack("!bccccccBii", -126, b"S", b"N", b"A", b"P", b"P", b"Y", 0, 1, 1)
    block = _snappy_block_header(MIB) + b"\x00" * 8
    framed = xerial + (struct.pack("!i", len(block)) + block) * 3  # 3 blocks of 1 MiB each
    with pytest.raises(DecompressionBombError):
        bounded_snappy_decode(framed, 2 * MIB)


def _v2_batch(values: list[bytes], *, base_offset: int) -> bytes:
    builder = MemoryRecordsBuilder(magic=2, compression_type=1, batch_size=1 << 30)
    for i, value in enumerate(values):
        builder.append(timestamp=1_700_000_000_000 + i, key=None, value=value, headers=[])
    builder.close()
    return struct.pack(">q", base_offset) + bytes(builder.buffer())[8:]  # as the broker assigns it


def test_a_v2_batch_over_the_cap_names_its_partition_and_offsets() -> None:
    """Through kafka-python's own batch and partition-records code, as a poll reads it."""
    bounded_codecs.install(MIB)
    try:
        buffer = _v2_batch([bytes(700_000), bytes(700_000)], base_offset=40)
        parts = Fetcher.PartitionRecords(40, TopicPartition("in", 3), MemoryRecords(buffer))
        with pytest.raises(DecompressionBombError) as caught:
            parts.take(10)
        exc = caught.value
        assert (exc.topic, exc.partition, exc.first_offset, exc.last_offset) == ("in", 3, 40, 41)
        assert "in[3] at offsets 40..41 (2 record(s)" in exc.describe()
        ordinary = _v2_batch([b'{"a": 1}', b'{"a": 2}'], base_offset=7)
        parts = Fetcher.PartitionRecords(7, TopicPartition("in", 3), MemoryRecords(ordinary))
        assert [r.value for r in parts.take(10)] == [b'{"a": 1}', b'{"a": 2}']
    finally:
        bounded_codecs.install(bounded_codecs.DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES)


def test_install_bounds_the_names_the_record_modules_call() -> None:
    bounded_codecs.install()
    assert v2.gzip_decode.__wrapped__ is bounded_gzip_decode  # within the poll budget
    assert bounded_codecs.current_limit() >= MIB
    with pytest.raises(ValueError, match="positive"):
        bounded_codecs.install(0)


@pytest.mark.parametrize("library", ["lz4.frame", "zstandard"])
def test_optional_codecs_stop_at_the_cap(library: str) -> None:
    """lz4 and zstd are optional for kafka-python (it refuses such batches without them)."""
    module = pytest.importorskip(library)
    if library == "lz4.frame":
        compress, decode = module.compress, bounded_codecs.bounded_lz4_decode
    else:
        compress, decode = module.ZstdCompressor().compress, bounded_codecs.bounded_zstd_decode
    data = bytes(range(256)) * 4096
    assert decode(compress(data), len(data)) == data
    with pytest.raises(DecompressionBombError):
        decode(compress(data), len(data) - 1)
    bomb = compress(bytes(64 * MIB))
    tracemalloc.start()
    try:
        with pytest.raises(DecompressionBombError):
            decode(bomb, MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB
