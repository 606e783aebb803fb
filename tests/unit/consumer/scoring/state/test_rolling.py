"""The bounded changelog (consumer/scoring/state/rolling.py, writes.py): rewrite slices, cycles,
and truncation only below a cycle that is durable and whose inputs are committed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from consumer.scoring.state.changelog import decode
from consumer.scoring.state.id_blob import IdBlob
from consumer.scoring.state.packed import is_pack
from consumer.scoring.state.record import ITEM_DTYPE
from consumer.scoring.state.rolling import RollingRewrite
from consumer.scoring.state.store import StagedChanges, StateStore
from consumer.scoring.state.table import ABSENT, PartitionTable
from consumer.scoring.state.writes import pending_states, slice_values, truncate_cycles, write_partition
from detection import ChangeDetector, parse_updates, train_detector
from tests.fakes import FakeSource, MemoryChangelog
from tests.unit.consumer.scoring.state.stream import snapshot_docs, stream
from tests.unit.consumer.scoring.state.test_change_loop import LoggingSink, decided, expected
from tests.unit.consumer.scoring.state.test_changelog_cache import (
    OrderSink,
    assert_changelog_holds,
    cached_service,
    final_state,
)


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs())[0])


def test_slices_cover_the_table_once_per_cycle_at_least_as_many_rows_as_changes() -> None:
    rolling = RollingRewrite(min_slice=4, max_slice=50)
    assert rolling.cut(0, rows=10, changed=1) is None  # no cycle begun
    rolling.begin(0, start=7)
    assert rolling.cut(0, rows=0, changed=3) is None  # an empty table: nothing to cover yet
    first = rolling.cut(0, rows=10, changed=1)
    second = rolling.cut(0, rows=99, changed=5)  # the cycle covers the 10 rows it began with
    assert first is not None and second is not None
    assert (first.start, first.stop, second.start, second.stop) == (0, 4, 4, 9)
    third = rolling.cut(0, rows=99, changed=500)
    assert third is not None and (third.start, third.stop) == (9, 10)
    assert rolling.cut(0, rows=99, changed=1) is None  # all cut: waits to be durable
    rolling.failed([third])
    again = rolling.cut(0, rows=99, changed=1)
    assert again is not None and (again.start, again.stop) == (9, 10)
    rolling.acked([second])  # not contiguous yet: nothing counts
    assert not rolling.complete()
    for piece in (first, second, again):
        piece.need = piece.stop
    rolling.acked([first, second, again])
    assert [(p, c.start, c.need) for p, c in rolling.complete()] == [(0, 7, 10)]
    rolling.begin(0, start=None)
    rolling.acked([third])  # a slice of the cycle before: ignored
    assert not rolling.complete()
    lost = rolling.cut(0, rows=3, changed=1)  # its batch never published (an error before apply)
    assert lost is not None and rolling.cut(0, rows=3, changed=1) is None
    rolling.rewind()
    again = rolling.cut(0, rows=3, changed=1)
    assert again is not None and (again.start, again.stop) == (0, 3)


def records(stock: list[float]) -> np.ndarray:
    out = np.zeros(len(stock), ITEM_DTYPE)
    out["stock"] = stock
    return out


def test_a_slice_holds_acknowledged_states_at_least_once() -> None:
    table = PartitionTable()
    table.load(["a", "b", "c"], records([1.0, 2.0, 3.0]), [1, 2, 3])
    before, rows = table.put_rows(["b", "d"], records([20.0, 40.0]), [8, 9])  # a batch in flight
    rolling = RollingRewrite()
    rolling.begin(0, start=0)
    piece = rolling.cut(0, rows=table.rows, changed=1)
    assert piece is not None
    assert before[1].tolist() == [2, ABSENT]  # d: inserted by the batch in flight
    pending = pending_states(piece, [{0: (["b", "d"], *before, rows)}])
    ids, values = slice_values(table, piece, pending)
    got = decode([b"\x00stockwatch.pack.x"], [_pack(ids, values)], committed=100)
    assert got.item_ids == ["a", "b", "c"]  # d: new in the batch in flight, written with its change
    assert got.records["stock"].tolist() == [1.0, 2.0, 3.0] and got.offsets.tolist() == [1, 2, 3]
    assert piece.need == 4
    ids, values = slice_values(table, piece, None)  # exactly-once: the table as it is
    assert len(ids) == 4 and piece.need == 10


def _pack(ids: IdBlob, values: np.ndarray) -> bytes:
    from consumer.scoring.state.packed import pack

    return pack(ids, values)


class CommittingSource(FakeSource):
    """The group's committed offsets are what the sink committed last."""

    def __init__(self, recs: Any, sink: Any) -> None:
        super().__init__(recs)
        self.sink = sink

    def committed(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        done: dict[tuple[str, int], int] = {}
        for kind, offsets in getattr(self.sink, "events", []):
            if kind == "commit":
                done.update(offsets)
        for offsets in getattr(self.sink, "commits", []):
            done.update(offsets)
        return {tp: done.get(tp) for tp in partitions}


def test_at_least_once_the_log_is_truncated_after_each_durable_cycle_and_still_restores(
    detector: ChangeDetector,
) -> None:
    recs = stream(n=3000, seed=11)
    sink = OrderSink(MemoryChangelog())
    source = CommittingSource(recs, sink)
    loop = cached_service(source, sink, detector)
    assert loop.state is not None and loop.state.store.rolling is not None
    loop.state.store.rolling.min_slice = 16  # ~170 items per partition: a cycle every few flushes
    loop.commits.interval_s = 0.0  # a flush and a commit after every settle
    stats = loop.run(max_events=3000, timeout=120)
    assert stats.events_in == 3000 and stats.final_commit
    changelog = sink.changelog
    assert len(changelog.truncations) >= 4 and set(changelog.deleted) == {0, 1}
    kept = {p: len(records) for p, records in changelog.partitions.items()}
    written = {p: d + kept[p] for p, d in changelog.deleted.items()}
    assert all(kept[p] < written[p] / 2 for p in kept)  # most of what was written is gone
    flagged, missing, table = expected(detector, recs)
    assert decided([sink]) == (flagged, missing)
    assert_changelog_holds(changelog, table)  # the truncated log restores every item's state
    for records in changelog.partitions.values():
        keys = [k for k, _ in records]
        assert b"\x00stockwatch.lineage" in keys and any(map(is_pack, keys))


def test_no_truncation_while_the_group_has_not_committed_the_cycles_inputs(detector: ChangeDetector) -> None:
    recs = stream(n=1500, seed=12)
    sink = OrderSink(MemoryChangelog())
    loop = cached_service(FakeSource(recs), sink, detector)  # the group's offsets: never known
    loop.state.store.rolling.min_slice = 16  # type: ignore[union-attr]
    loop.commits.interval_s = 0.0
    loop.run(max_events=1500, timeout=120)
    assert not sink.changelog.truncations
    table = expected(detector, recs)[2]
    assert_changelog_holds(sink.changelog, table)


def test_exactly_once_slices_join_the_batch_and_truncate_once_settled(detector: ChangeDetector) -> None:
    from tests.unit.consumer.scoring.state.test_change_loop import service

    recs = stream(n=3000, seed=13)
    sink = LoggingSink(MemoryChangelog(), transactional=True)
    source = CommittingSource(recs, sink)
    loop = service(source, sink, detector)
    loop.exactly_once = True
    assert loop.state is not None and loop.state.store.cache is None
    loop.state.store.rolling.min_slice = 16  # type: ignore[union-attr]
    loop.run(max_events=3000, timeout=120)
    assert len(sink.changelog.truncations) >= 4
    flagged, missing, table = expected(detector, recs)
    assert decided([sink]) == (flagged, missing)
    assert_changelog_holds(sink.changelog, table)


def test_a_topic_that_refuses_delete_records_is_restored_but_no_longer_rewritten(
    caplog: pytest.LogCaptureFixture,
) -> None:
    changelog = MemoryChangelog()
    changelog.refuses = True
    store = StateStore(changelog)
    store.rolling = RollingRewrite(min_slice=2)
    store.truncator.background = False
    store.assign(0, resume_offset=0)
    store.committed_offset = lambda _p: 10**9
    ids, recs, offsets = ["a", "b"], records([1.0, 2.0]), np.asarray([0, 1], np.int64)
    store.apply(StagedChanges({0: (ids, recs, offsets)}))
    written, piece = write_partition(store, changelog.topic, 0, (ids, recs, offsets), acked_only=False)
    assert piece is not None and store.rolling is not None
    changelog.append(written)
    store.slices_acked([piece])
    truncate_cycles(store)  # the cycle is durable: truncation requested (refused)
    truncate_cycles(store)  # the refusal taken: no more rewrite
    assert store.rolling is None and "refuses DeleteRecords" in caplog.text
    assert sorted(final_state(changelog)[0].row_ids(0, 2)[0].tolist()) == [b"a", b"b"]


class FlakyChangelog(MemoryChangelog):
    def __init__(self) -> None:
        super().__init__()
        self.fail_truncate = self.fail_end = False

    def truncate(self, partition: int, before: int) -> bool:
        if self.fail_truncate:
            raise RuntimeError("broker down")
        return super().truncate(partition, before)

    def end_offset(self, partition: int) -> int:
        if self.fail_end:
            raise RuntimeError("broker down")
        return super().end_offset(partition)


@pytest.mark.parametrize("background", [True, False])
def test_the_truncation_thread_survives_outages_and_a_cycle_without_start_truncates_nothing(
    background: bool,
) -> None:
    from consumer.scoring.state.truncation import Truncator

    changelog = FlakyChangelog()
    changelog.append(changelog_records_for(changelog.topic, 6))
    rolling = RollingRewrite()
    truncator = Truncator(changelog, background=background)
    changelog.fail_truncate = changelog.fail_end = True
    truncator.request(0, rolling.wait(0), 3)  # both fail: logged, the cycle starts unknown
    results = _drain(truncator, 1)
    changelog.fail_truncate = changelog.fail_end = False
    second = rolling.wait(0)
    truncator.request(0, second, 4)
    results += _drain(truncator, 1)
    truncator.close()
    assert [(r.start, r.refused) for r in results] == [(None, False), (6, False)]
    assert changelog.truncations == [(0, 4)]
    for r in results:
        rolling.started(r.partition, r.cycle, r.start)
    assert rolling.cycles[0] is second and second.ready and second.start == 6


def changelog_records_for(topic: str, n: int) -> list[Any]:
    from consumer.scoring.state.changelog import changelog_records

    return [r for k in range(n) for r in changelog_records(topic, 0, [f"i{k}"], records([float(k)]), [k])]


def _drain(truncator: Any, n: int) -> list[Any]:
    import time

    got: list[Any] = []
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        got += truncator.results()
        time.sleep(0.01)
    return got
