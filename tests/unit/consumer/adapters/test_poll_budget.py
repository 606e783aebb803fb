"""The poll budget: one poll stops inflating batches at the budget, and no record is lost or repeated.

Driven through kafka-python's own Fetcher.fetched_records / PartitionRecords / batch code, with a
fake log in place of the broker: each "fetch" hands the fetcher the batches from the position on.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.consumer.fetcher import Fetcher
from kafka.consumer.subscription_state import SubscriptionState
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.structs import TopicPartition

from consumer.adapters.kafka import bounded_codecs, poll_budget
from consumer.adapters.kafka.bounded_codecs import DecompressionBombError

CAP = 1 << 20
TP = TopicPartition("in", 0)


def _batch(value: bytes, offset: int) -> bytes:
    """One gzip v2 batch holding one record at ``offset``, as the broker stores it."""
    builder = MemoryRecordsBuilder(magic=2, compression_type=1, batch_size=1 << 30)
    builder.append(timestamp=1_700_000_000_000, key=None, value=value, headers=[])
    builder.close()
    return struct.pack(">q", offset) + bytes(builder.buffer())[8:]


def _fetcher(position: int) -> Any:
    """A real Fetcher without a network client: only what fetched_records and _append read."""
    fetcher: Any = Fetcher.__new__(Fetcher)
    fetcher.config = {"max_poll_records": 2000}
    fetcher._subscriptions = SubscriptionState()
    fetcher._subscriptions.assign_from_user([TP])
    fetcher._subscriptions.seek(TP, position)
    fetcher._completed_fetches = collections.deque()
    fetcher._paused_completed_fetches = {}
    fetcher._paused_partition_records = {}
    fetcher._next_partition_records = None
    fetcher._next_in_line_exception_metadata = None
    fetcher._sensors = None
    return fetcher


def _polls(values: list[bytes]) -> Iterator[list[Any]]:
    """Each poll's records; a poll that finds nothing buffered "fetches" from the position."""
    log = [_batch(value, offset) for offset, value in enumerate(values)]
    fetcher = _fetcher(0)
    for _ in range(3 * len(values)):
        position = fetcher._subscriptions.assignment[TP].position.offset
        if position >= len(values):
            return
        if not fetcher._next_partition_records:
            fetched = MemoryRecords(b"".join(log[position:]))
            fetcher._next_partition_records = Fetcher.PartitionRecords(position, TP, fetched)
        yield fetcher.fetched_records()[0].get(TP, [])
    raise AssertionError("the partition never reached its end")


@pytest.fixture(autouse=True)
def cap_of_one_mib() -> Iterator[None]:
    bounded_codecs.install(CAP)
    yield
    bounded_codecs.install(bounded_codecs.DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES)


def test_a_poll_stops_at_the_budget_and_the_next_poll_reads_on_from_its_position() -> None:
    sizes = [300_000, 300_000, 300_000, 600_000, 600_000, 100]
    values = [bytes([i]) * size for i, size in enumerate(sizes)]
    polls = [[r.offset for r in records] for records in _polls(values)]
    assert [o for offsets in polls for o in offsets] == list(range(len(values)))  # each once, in order
    assert polls == [[0, 1, 2], [3], [4, 5]]  # 0.9 MiB, then 0.6 (+0.6 would pass 1 MiB), then the rest


def test_every_batch_just_under_the_cap_comes_one_per_poll() -> None:
    values = [bytes([i]) * (CAP - 4096) for i in range(4)]
    polls = list(_polls(values))
    assert [[r.value for r in records] for records in polls] == [[v] for v in values]


def test_a_bomb_after_a_read_batch_is_left_to_the_next_poll_which_names_it() -> None:
    values = [b'{"a": 1}', bytes(3 * CAP), b'{"a": 2}']
    polls = _polls(values)
    assert [r.offset for r in next(polls)] == [0]
    with pytest.raises(DecompressionBombError) as caught:
        next(polls)
    assert (caught.value.topic, caught.value.first_offset, caught.value.last_offset) == ("in", 1, 1)


def test_a_partition_refused_whole_stays_where_the_poll_found_it() -> None:
    """Another partition spent the budget: this one's records are dropped unread, its offset kept."""
    first = Fetcher.PartitionRecords(0, TP, MemoryRecords(_batch(bytes(CAP - 4096), 0)))
    other = TopicPartition("in", 1)
    second = Fetcher.PartitionRecords(5, other, MemoryRecords(_batch(bytes(8192), 5)))

    def one_poll(_: Any) -> tuple[list[Any], list[Any]]:
        return first.take(10), second.take(10)

    taken, refused = poll_budget.poll_scope(one_poll)(None)
    assert [r.offset for r in taken] == [0]
    assert refused == [] and not second and second.next_fetch_offset == 5
    again = Fetcher.PartitionRecords(5, other, MemoryRecords(_batch(bytes(8192), 5)))
    assert [r.offset for r in poll_budget.poll_scope(lambda _: again.take(10))(None)] == [5]


def test_outside_a_poll_nothing_but_the_cap_applies() -> None:
    buffer = b"".join(_batch(bytes(CAP - 4096), offset) for offset in range(3))
    assert len(Fetcher.PartitionRecords(0, TP, MemoryRecords(buffer)).take(10)) == 3
