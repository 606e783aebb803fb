"""The changelog cache of at-least-once `consume` (consumer/scoring/state/cache.py): an item's changes
between two commits cost one changelog record, written (and acknowledged) before the offsets are
committed — on a commit, on a revocation and at shutdown; exactly-once writes each batch's records
in its own transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import Settings
from consumer.ports import OutputRecord
from consumer.scoring.change_batch import ChangeContext, process_change_batch
from consumer.scoring.loop import ScoringService
from consumer.scoring.metrics import ConsumerMetrics
from consumer.scoring.state.cache import MERGE_AFTER, ChangelogCache
from consumer.scoring.state.changelog import CHANGELOG_VALUE, decode
from consumer.scoring.state.id_blob import EncodedIds
from consumer.scoring.state.packed import is_pack, unpack
from consumer.scoring.state.record import ITEM_DTYPE, states_of
from consumer.scoring.state.seeds import BackgroundSeeds, SnapshotSeeds
from consumer.scoring.state.store import StagedChanges, StateStore
from consumer.scoring.state.table import PartitionTable
from consumer.scoring.state_flush import StateFlush
from consumer.scoring.wiring import build_state
from detection import ChangeDetector, parse_updates, train_detector
from tests.fakes import Acked, FakeSource, FakeWatcher, MemoryChangelog
from tests.unit.consumer.scoring.state.stream import snapshot_docs, stream
from tests.unit.consumer.scoring.state.test_change_loop import CONFIG, LoggingSink, decided, expected

TOPIC = "g.in.state"


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs())[0])


def staged(partition: int, ids: list[str], stock: list[float], offsets: list[int]) -> StagedChanges:
    records = np.zeros(len(ids), ITEM_DTYPE)
    records["stock"] = stock
    return StagedChanges({partition: (ids, records, np.asarray(offsets, np.int64))})


def logged(records: Sequence[OutputRecord]) -> dict[str, tuple[float, int]]:
    """Each item's last state in packed changelog records: (stock, input offset)."""
    out = {}
    for r in records:
        ids, rows = unpack(r.value or b"", CHANGELOG_VALUE.itemsize) or ([], None)
        values = np.frombuffer(rows, CHANGELOG_VALUE) if rows is not None else []
        for i, value in zip(ids, values, strict=True):
            out[i.decode()] = (float(value["state"]["stock"]), int(value["offset"]))
    return out


def item_states(outputs: Sequence[OutputRecord], topic: str) -> int:
    """Item states the changelog records among ``outputs`` hold (packed: many per record)."""
    packs = [unpack(o.value or b"", CHANGELOG_VALUE.itemsize) for o in outputs if o.topic == topic]
    return sum(len(p[0]) for p in packs if p is not None)


def test_an_item_changed_by_several_batches_is_one_record_with_its_last_state() -> None:
    cache = ChangelogCache(TOPIC)
    cache.add(staged(0, ["a", "b"], [1, 2], [0, 1]))
    cache.add(staged(0, ["b", "c"], [3, 4], [2, 3]))
    cache.add(staged(1, ["d"], [5], [0]))
    assert len(cache) == 5
    taken = cache.take()
    assert (taken.items, taken.changes, len(cache)) == (4, 5, 0)
    assert logged(taken.records) == {"a": (1, 0), "b": (3, 2), "c": (4, 3), "d": (5, 0)}
    assert {r.partition for r in taken.records if "d" in logged([r])} == {1}
    assert len(taken.records) == 2  # one packed record per partition


def test_a_flush_not_acknowledged_is_given_back_before_newer_changes() -> None:
    cache = ChangelogCache(TOPIC)
    cache.add(staged(0, ["a", "b"], [1, 2], [0, 1]))
    taken = cache.take()
    cache.add(staged(0, ["a"], [7], [2]))  # newer: must win over what is given back
    cache.give_back(taken)
    assert logged(cache.take().records) == {"a": (7, 2), "b": (2, 1)}


def test_revoked_partitions_are_dropped_and_many_chunks_are_merged() -> None:
    cache = ChangelogCache(TOPIC)
    for k in range(MERGE_AFTER + 5):
        cache.add(staged(0, ["a", f"x{k}"], [k, k], [2 * k, 2 * k + 1]))
    cache.add(staged(1, ["b"], [1], [0]))
    assert len(cache) < 2 * (MERGE_AFTER + 5)  # merged: memory stays near one entry per item
    cache.drop([1])
    got = logged(cache.take().records)
    assert got["a"] == (MERGE_AFTER + 4, 2 * (MERGE_AFTER + 4)) and "b" not in got
    assert len(got) == MERGE_AFTER + 6


def cached_service(source: FakeSource, sink: LoggingSink, detector: ChangeDetector) -> ScoringService:
    watcher = FakeWatcher()
    watcher._model = detector  # type: ignore[assignment]
    store = StateStore(sink.changelog)
    store.cache = ChangelogCache(sink.changelog.topic)
    seeds = BackgroundSeeds(lambda _group: snapshot_docs())  # retiring each acknowledged flush's items
    ctx = ChangeContext(store, sink.changelog.topic, seeds)
    return ScoringService(source=source, sink=sink, watcher=watcher, config=CONFIG,  # type: ignore[arg-type]
                          max_poll_records=40, retry_backoff_s=0.0, state=ctx)  # fmt: skip


class OrderSink(LoggingSink):
    """Records publishes and commits in one sequence; ``refuse``: flushes of the changelog that fail."""

    def __init__(self, changelog: MemoryChangelog, refuse: int = 0) -> None:
        super().__init__(changelog)
        self.events: list[tuple[str, Any]] = []
        self.refuse = refuse

    def publish(self, outputs: Sequence[OutputRecord], offsets: Mapping[Any, int], source: Any) -> Acked:
        items = item_states(outputs, self.changelog.topic)
        flush = all(o.topic == self.changelog.topic for o in outputs)
        if items and flush and self.refuse:  # a flush: refused, nothing written
            self.refuse -= 1
            self.events.append(("refused", items))
            return Acked(RuntimeError("not acknowledged"))
        self.events.append(("publish", items))
        return super().publish(outputs, offsets, source)

    def commit(self, offsets: Mapping[tuple[str, int], int], source: Any, *, sync: bool) -> None:
        self.events.append(("commit", dict(offsets)))
        super().commit(offsets, source, sync=sync)


def final_state(changelog: MemoryChangelog) -> dict[int, PartitionTable]:
    out = {}
    for p in changelog.partitions:
        keys, values = changelog.read(p)
        restored = decode(keys, values, committed=2**62)
        out[p] = PartitionTable()
        out[p].load(restored.item_ids, restored.records, restored.offsets)
    return out


def assert_changelog_holds(changelog: MemoryChangelog, table: Any) -> None:
    """The changelog alone restores every item to the offline replay's state (counters included)."""
    for p, part in final_state(changelog).items():
        ids = [i for i in table if int(i.split("-")[1]) % 2 == p]
        rows = part.lookup(ids)
        held = rows >= 0
        got, _ = part.get(rows[held])
        want = table.gather(table.lookup([i for i, h in zip(ids, held, strict=True) if h]))
        assert held.sum() > 50 and states_of(got).tobytes() == want.tobytes()


def test_each_commit_follows_an_acknowledged_flush_with_one_record_per_changed_item(
    detector: ChangeDetector,
) -> None:
    recs = stream(seed=6)
    sink = OrderSink(MemoryChangelog())
    loop = cached_service(FakeSource(recs), sink, detector)
    loop.state.store.rolling = None  # type: ignore[union-attr]  # changes only (rewrites: test_rolling.py)
    loop.commits.interval_s = 3600.0  # a commit at the first settle, then only at shutdown
    stats = loop.run(max_events=600, timeout=60)
    assert stats.events_in == 600 and stats.final_commit
    batches = [n for kind, n in sink.events if kind == "publish" and n == 0]
    flushes = [k for k, (kind, n) in enumerate(sink.events) if kind == "publish" and n]
    commits = [k for k, (kind, _) in enumerate(sink.events) if kind == "commit"]
    assert len(batches) >= 15 and len(flushes) == len(commits) == 2  # no record in a batch's outputs
    assert all(f == c - 1 for f, c in zip(flushes, commits, strict=True))
    flagged, missing, table = expected(detector, recs)
    written = sum(n for kind, n in sink.events if kind == "publish")
    distinct = len({r.key for part in recs.values() for r in part})
    records = [r for r in sink.changelog.partitions[0] + sink.changelog.partitions[1] if is_pack(r[0])]
    assert len(records) <= 2 * 2  # each flush: one packed record per partition
    assert written <= distinct + 40 < 600  # the first commit's items, then each item once
    assert decided([sink]) == (flagged, missing)
    assert_changelog_holds(sink.changelog, table)  # shutdown flushed everything before its commit
    assert loop.metrics.registry.get_sample_value("stockwatch_state_changelog_records_total") == written


def test_a_flush_not_acknowledged_commits_nothing_until_it_is(detector: ChangeDetector) -> None:
    recs = stream(seed=7)
    sink = OrderSink(MemoryChangelog(), refuse=2)
    loop = cached_service(FakeSource(recs), sink, detector)
    stats = loop.run(max_events=600, timeout=60)
    assert stats.events_in == 600 and stats.final_commit
    kinds = [kind for kind, _ in sink.events]
    first_commit = kinds.index("commit")
    assert kinds.count("refused") == 2 and kinds.index("refused") < first_commit
    assert kinds[first_commit - 1] == "publish" and sink.events[first_commit - 1][1] > 0
    flagged, missing, table = expected(detector, recs)
    assert decided([sink]) == (flagged, missing)
    assert_changelog_holds(sink.changelog, table)
    assert loop.state.seeds.retired > 0  # type: ignore[union-attr]  # decided the same with retirement on


def test_a_revocation_flushes_before_its_offsets_are_handed_back(detector: ChangeDetector) -> None:
    recs = stream(seed=8)
    sink = OrderSink(MemoryChangelog())
    loop = cached_service(FakeSource(recs), sink, detector)
    loop.commits.interval_s = 3600.0
    loop.run(max_events=200, timeout=60)
    cache = loop.state.store.cache  # type: ignore[union-attr]
    assert cache is not None and not len(cache)  # shutdown flushed
    # a batch acknowledged, not committed yet, then the partitions are revoked
    result = process_change_batch(recs[("in", 0)][200:240], detector, loop.state, CONFIG,  # type: ignore[arg-type]
                                  now=datetime.now(UTC))  # fmt: skip
    loop.state.published(result)  # type: ignore[union-attr]
    loop.state.acknowledged(result)  # type: ignore[union-attr]
    assert len(cache) == len(result.state or ())
    before = len(sink.events)
    loop.membership.on_revoked([("in", 0)])
    assert sink.events[before:] and sink.events[before][0] == "publish" and not len(cache)


def test_exactly_once_writes_each_batchs_records_in_its_transaction(detector: ChangeDetector) -> None:
    settings = {"kafka_bootstrap": "127.0.0.1:1", "input_topic": "in", "group_id": "g", "state_seed": "none"}
    eos = build_state(Settings(**settings, delivery="exactly-once", transactional_id="g.tx"))  # type: ignore[arg-type]
    alo = build_state(Settings(**settings))  # type: ignore[arg-type]
    assert eos.store.cache is None and alo.store.cache is not None
    recs = stream(n=80, partitions=1)[("in", 0)][:40]
    for built, in_batch in ((eos, True), (alo, False)):
        built.store.changelog = MemoryChangelog(built.changelog_topic)
        ctx = ChangeContext(built.store, built.changelog_topic, SnapshotSeeds(snapshot_docs()))
        ctx.restore_for({("in", 0): 0})
        result = process_change_batch(recs, detector, ctx, CONFIG, now=datetime.now(UTC))
        records = [o for o in result.outputs if o.topic == ctx.changelog_topic]
        assert bool(records) == in_batch and len(result.state or ()) > 10


def test_a_crash_after_flushes_whose_commits_were_lost_applies_nothing_twice(
    detector: ChangeDetector,
) -> None:
    recs = stream(seed=9)
    changelog = MemoryChangelog()
    first = OrderSink(changelog)
    cached_service(FakeSource(recs), first, detector).run(max_events=300, timeout=60)
    commits = [offsets for kind, offsets in first.events if kind == "commit"]
    assert len(commits) >= 4
    # the later commits were lost, their flushes were not: those records are of uncommitted inputs
    resume = {**dict.fromkeys(recs, 0), **commits[len(commits) // 2]}
    source = FakeSource(recs)
    source.position.update(resume)
    second = OrderSink(changelog)
    loop = cached_service(source, second, detector)
    loop.run(max_events=600 - sum(resume.values()), timeout=60)
    assert any(r.ignored for r in loop.state.store.restores)  # type: ignore[union-attr]
    assert loop.state.seeds.retired >= sum(r.items for r in loop.state.store.restores)  # type: ignore[union-attr]
    flagged, missing, table = expected(detector, recs)
    assert decided([first, second]) == (flagged, missing)
    assert_changelog_holds(changelog, table)


class Held:
    """A flush's delivery the broker has not acknowledged until ``release``."""

    def __init__(self) -> None:
        self.released = False
        self.waited = False

    def done(self) -> bool:
        return self.released

    def error(self) -> BaseException | None:
        return None

    def wait(self) -> None:
        self.waited = True
        self.released = True


class SlowFlushSink(OrderSink):
    def __init__(self, changelog: MemoryChangelog) -> None:
        super().__init__(changelog)
        self.held: list[Held] = []

    def publish(self, outputs: Sequence[OutputRecord], offsets: Mapping[Any, int], source: Any) -> Any:
        acked = super().publish(outputs, offsets, source)
        if self.events[-1][1]:  # a flush of item records: acknowledged later
            self.held.append(Held())
            return self.held[-1]
        return acked


def test_a_periodic_commit_does_not_wait_for_its_flush_and_commits_once_it_is_acknowledged(
    detector: ChangeDetector,
) -> None:
    recs = stream(seed=10)
    sink = SlowFlushSink(MemoryChangelog())
    loop = cached_service(FakeSource(recs), sink, detector)
    flush = loop.commits.flush
    assert flush is not None
    loop.state.seeds.prepare(detector.metadata.group_field, lambda: None)  # type: ignore[union-attr]
    loop.state.restore_for({("in", 0): 0})  # type: ignore[union-attr]
    first = process_change_batch(recs[("in", 0)][:40], detector, loop.state, CONFIG, now=datetime.now(UTC))  # type: ignore[arg-type]
    loop.state.published(first)  # type: ignore[union-attr]
    loop.state.acknowledged(first)  # type: ignore[union-attr]
    offsets = {("in", 0): 40}
    assert not loop.commits.commit(offsets, sync=False)  # flush started, not acknowledged: no commit yet
    assert flush.pending and not [e for e in sink.events if e[0] == "commit"]
    loop.commits.after_settle(False, sync=False)
    assert not [e for e in sink.events if e[0] == "commit"] and not sink.held[0].waited  # scoring goes on
    sink.held[0].released = True
    loop.commits.after_settle(False, sync=False)
    assert sink.events[-1] == ("commit", offsets) and not flush.pending
    assert not sink.held[0].waited  # never blocked on it


def test_a_failed_flush_gives_back_only_partitions_still_held_by_the_same_table() -> None:
    changelog = MemoryChangelog(TOPIC)
    store = StateStore(changelog)
    store.cache = ChangelogCache(TOPIC)
    for p in (0, 1, 2):
        store.assign(p, resume_offset=0)
    for p in (0, 1, 2):
        store.cache.add(staged(p, [f"i{p}"], [p], [0]))
    failing = Held()
    failing.error = lambda: RuntimeError("not acknowledged")  # type: ignore[method-assign]

    class Sink:
        def publish(self, outputs: Any, offsets: Any, source: Any) -> Held:
            return failing

    flush = StateFlush(store, Sink(), FakeSource({}), ConsumerMetrics())  # type: ignore[arg-type]
    flush.start()
    store.revoke([1])  # gone
    store.revoke([2])
    store.assign(2, resume_offset=0)  # back, restored afresh: the flush's records are not of this table
    assert flush.done(block=False) is None
    failing.released = True
    assert flush.done(block=False) is False
    assert set(logged(store.cache.take().records)) == {"i0"}


IDS_NON_ASCII = st.sampled_from(["a", "b", "é", "€x", "", "sku-1", "sku-10", "\U0001f600", "z" * 40])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(IDS_NON_ASCII, max_size=6, unique=True), min_size=1, max_size=6), st.data())
def test_a_flush_takes_the_ids_utf8_from_their_table_and_writes_what_encoding_them_wrote(
    batches, data
) -> None:
    store = StateStore(MemoryChangelog())
    store.assign(0, resume_offset=0)
    with_rows, without = ChangelogCache(TOPIC), ChangelogCache(TOPIC)
    for k, ids in enumerate(batches):
        changes = staged(0, list(ids), [float(k)] * len(ids), list(range(10 * k, 10 * k + len(ids))))
        store.apply(changes)  # the rows the items were put in join the changes
        with_rows.add(changes)
        without.add(StagedChanges(changes.by_partition))  # rows unknown: the ids are encoded
    table = store.table(0)
    rows = np.array(data.draw(st.lists(st.integers(0, max(table.rows - 1, 0)), max_size=12)), np.intp)
    if table.rows:
        got = table.ids_of(rows)
        assert got is not None and got.tolist() == [
            table.row_ids(r, r + 1)[0].tolist()[0] for r in rows.tolist()
        ]
    assert PartitionTable(keep_ids=False).ids_of(np.zeros(0, np.intp)) is None
    a, b = with_rows.take(), without.take()
    assert [r.value for r in a.records] == [r.value for r in b.records]  # the same ids, values, order
    assert a.chunks[0][0] == b.chunks[0][0] if 0 in a.chunks else not b.chunks
    if any(batches):
        assert isinstance(a.chunks[0][0], EncodedIds) and not isinstance(b.chunks[0][0], EncodedIds)
