"""`consume` with the default detector and the per-item state, on fakes: decisions equal an offline
replay of the same stream — through failed deliveries (rollback), restarts (restore) and replays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest

from consumer.ports import DeliveryError, MongoUnavailableError, OutputRecord
from consumer.scoring.batch import BatchConfig
from consumer.scoring.change_batch import ChangeContext, process_change_batch
from consumer.scoring.loop import ScoringService
from consumer.scoring.state.record import states_of
from consumer.scoring.state.seeds import BackgroundSeeds, SnapshotSeeds
from consumer.scoring.state.store import StateStore
from detection import ChangeDetector, parse_updates, train_detector
from tests.fakes import Acked, FakeSink, FakeSource, FakeWatcher, MemoryChangelog, Rec
from tests.unit.consumer.scoring.state.stream import offline, snapshot_docs, stream

CONFIG = BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq", max_message_bytes=4096)


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs())[0])


class LoggingSink(FakeSink):
    """A FakeSink whose outputs (even of a failed delivery: partly written) reach the changelog."""

    def __init__(
        self, changelog: MemoryChangelog, fail_at: int | None = None, *, transactional: bool = False
    ) -> None:
        super().__init__(fail_at)
        self.changelog = changelog
        self.transactional = transactional  # a failed batch's outputs are aborted: never visible

    def publish(self, outputs: Sequence[OutputRecord], offsets: Mapping[Any, int], source: Any) -> Acked:
        if self.transactional and len(self.published) == self.fail_at:  # the transaction aborts
            self.published.append([])
            raise DeliveryError("transaction aborted")
        self.changelog.append(outputs)
        return super().publish(outputs, offsets, source)

    def commit(self, offsets: Mapping[tuple[str, int], int], source: Any, *, sync: bool) -> None:
        self.commits.append(dict(offsets))


def service(source: FakeSource, sink: LoggingSink, detector: ChangeDetector) -> ScoringService:
    watcher = FakeWatcher()
    watcher._model = detector  # type: ignore[assignment]
    seeds = BackgroundSeeds(lambda _group: snapshot_docs())  # retiring: parity holds with retirement on
    ctx = ChangeContext(StateStore(sink.changelog), sink.changelog.topic, seeds)
    return ScoringService(source=source, sink=sink, watcher=watcher, config=CONFIG,  # type: ignore[arg-type]
                          max_poll_records=40, retry_backoff_s=0.0, state=ctx)  # fmt: skip


def decided(sinks: Sequence[FakeSink]) -> tuple[dict[tuple[int, int], float], set[tuple[int, int]]]:
    """(partition, offset) -> score of every anomaly event, and the missing_field dead letters."""
    anomalies, missing = {}, set()
    for sink in sinks:
        for batch in sink.published:
            for o in batch:
                if o.topic == "anomalies":
                    event = orjson.loads(o.value or b"")
                    where = (event["source"]["partition"], event["source"]["offset"])
                    assert anomalies.setdefault(where, event["score"]) == event["score"]  # duplicates agree
                elif o.topic == "dlq":
                    headers = dict(o.headers)
                    assert headers["dlq.reason"] == b"missing_field"
                    missing.add((int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"])))
    return anomalies, missing


def expected(detector: ChangeDetector, recs: dict[tuple[str, int], list[Rec]]) -> tuple[Any, Any, Any]:
    decisions, table, rows = offline(detector, recs)
    flagged = {
        (rows[i].partition, rows[i].offset): float(decisions.scores[i]) for i in decisions.anomaly_indices
    }
    missing = {(rows[i].partition, rows[i].offset) for i in decisions.rejected}
    return flagged, missing, table


def assert_same_state(loop: ScoringService, table: Any) -> None:
    store = loop.state.store  # type: ignore[union-attr]
    for p in store.owned:
        part = store.table(p)
        ids = [i for i in table if int(i.split("-")[1]) % 2 == p]
        rows = part.lookup(ids)
        touched = rows >= 0
        got, _ = part.get(rows[touched])
        want = table.gather(table.lookup([i for i, t in zip(ids, touched, strict=True) if t]))
        assert states_of(got).tobytes() == want.tobytes()


def test_consume_decides_like_an_offline_replay(detector: ChangeDetector) -> None:
    recs = stream()
    sink = LoggingSink(MemoryChangelog())
    loop = service(FakeSource(recs), sink, detector)
    stats = loop.run(max_events=600, timeout=60)
    assert stats.events_in == 600
    flagged, missing, table = expected(detector, recs)
    assert len(flagged) >= 5 and len(missing) >= 3
    assert decided([sink]) == (flagged, missing)
    assert_same_state(loop, table)
    registry = loop.metrics.registry
    assert registry.get_sample_value("stockwatch_state_partitions") == 2
    assert registry.get_sample_value("stockwatch_state_restore_seconds_count") == 2
    assert loop.state.seeds.retired > 0  # type: ignore[union-attr]  # decided the same with retirement on


def test_a_failed_delivery_rolls_the_state_back_before_the_batch_is_read_again(
    detector: ChangeDetector,
) -> None:
    recs = stream(seed=2)
    sink = LoggingSink(MemoryChangelog(), fail_at=3)
    loop = service(FakeSource(recs), sink, detector)
    stats = loop.run(max_events=600, timeout=60)
    assert stats.delivery_failures == 1 and stats.events_in == 600
    flagged, missing, table = expected(detector, recs)
    assert decided([sink]) == (flagged, missing)
    assert_same_state(loop, table)  # the failed batch's changes were not applied twice


def test_a_restart_restores_from_the_changelog_and_ignores_changes_of_uncommitted_inputs(
    detector: ChangeDetector,
) -> None:
    recs = stream(seed=3)
    changelog = MemoryChangelog()
    first = LoggingSink(changelog)
    service(FakeSource(recs), first, detector).run(max_events=300, timeout=60)
    # a crash lost the last commits: the input is read again from an earlier commit (a batch
    # boundary, as every commit is), while the changelog already holds the changes of those inputs
    assert len(first.commits) >= 4
    resume = {**dict.fromkeys(recs, 0), **first.commits[len(first.commits) // 2]}
    source = FakeSource(recs)
    source.position.update(resume)
    second = LoggingSink(changelog)
    loop = service(source, second, detector)
    loop.run(max_events=600 - sum(resume.values()), timeout=60)
    assert sorted(changelog.reads) == [0, 0, 1, 1]  # each run restored each partition once
    assert [r.ignored for r in loop.state.store.restores] != [0, 0]  # type: ignore[union-attr]
    flagged, missing, table = expected(detector, recs)
    assert decided([first, second]) == (flagged, missing)
    assert_same_state(loop, table)


def test_an_update_older_than_its_items_state_is_skipped_not_applied_again(detector: ChangeDetector) -> None:
    recs = stream(n=80, partitions=1)
    changelog = MemoryChangelog()
    ctx = ChangeContext(StateStore(changelog), changelog.topic, SnapshotSeeds(snapshot_docs()))
    ctx.restore_for({("in", 0): 0})
    now = datetime.now(UTC)
    batch = recs[("in", 0)][:40]
    result = process_change_batch(batch, detector, ctx, CONFIG, now=now)
    ctx.published(result)
    again = process_change_batch(batch, detector, ctx, CONFIG, now=now)  # a rewind the state did not see
    assert again.state is not None and len(again.state) == 0
    assert not [o for o in again.outputs if o.topic == "anomalies"]
    table = ctx.store.table(0)
    assert np.all(table.get(table.lookup(list(result.state.by_partition[0][0])))[1] < 40)  # type: ignore[union-attr]


class FlakySeeds(SnapshotSeeds):
    """The inventory is unreachable for the first ``failures`` batches."""

    def __init__(self, failures: int) -> None:
        super().__init__(snapshot_docs())
        self.failures = failures

    def prepare(self, group_field: str, tick: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise MongoUnavailableError("inventory unreachable")


def test_an_unreachable_inventory_rewinds_and_retries_the_batch(detector: ChangeDetector) -> None:
    recs = stream(n=200, seed=4)
    sink = LoggingSink(MemoryChangelog())
    loop = service(FakeSource(recs), sink, detector)
    loop.state = ChangeContext(loop.state.store, sink.changelog.topic, FlakySeeds(2))  # type: ignore[union-attr]
    stats = loop.run(max_events=200, timeout=60)
    assert stats.events_in == 200 and stats.delivery_failures == 2
    flagged, missing, table = expected(detector, recs)
    assert decided([sink]) == (flagged, missing)
    assert_same_state(loop, table)


def test_an_aborted_transaction_drops_its_partitions_which_are_restored_from_the_changelog(
    detector: ChangeDetector,
) -> None:
    recs = stream(seed=5)
    sink = LoggingSink(MemoryChangelog(), fail_at=3, transactional=True)
    loop = service(FakeSource(recs), sink, detector)
    loop.exactly_once = True
    stats = loop.run(max_events=600, timeout=60)
    assert stats.delivery_failures == 1 and stats.events_in == 600
    assert sorted(sink.changelog.reads) == [0, 0, 1]  # the aborted batch's partition is restored again
    flagged, missing, table = expected(detector, recs)
    assert decided([sink]) == (flagged, missing)
    assert_same_state(loop, table)
    assert loop.state.seeds.retired > 0  # type: ignore[union-attr]  # each committed transaction's items
