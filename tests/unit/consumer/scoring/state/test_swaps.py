"""Hot swaps between the seed model and the change detector (and between change detectors that group
peers by different fields), on fakes: each batch is decided by one model, the state is used by the
change path only, and a state that no longer follows its partition's updates starts afresh from the
inventory seed — in this process (the seed decided them) and in the next (the lineage record)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pytest

from consumer.scoring.batch import BatchConfig
from consumer.scoring.change_batch import ChangeContext
from consumer.scoring.loop import ScoringService
from consumer.scoring.state.changelog import LINEAGE_KEY, RESET_KEY, Lineage, changelog_records
from consumer.scoring.state.seeds import SnapshotSeeds
from consumer.scoring.state.store import StateStore
from detection import AnomalyModel, ChangeDetector, parse_item, parse_updates, train_detector, train_model
from detection.item_state import STATE_DTYPE
from tests.fakes import FakeSource, MemoryChangelog, Rec
from tests.unit.consumer.scoring.state.stream import snapshot_docs, stream
from tests.unit.consumer.scoring.state.test_change_loop import LoggingSink

CONFIG = BatchConfig(
    anomaly_topic="anomalies", dlq_topic="dlq", decisions_topic="decisions", max_message_bytes=4096
)
Model = AnomalyModel | ChangeDetector


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs())[0]).with_version("20261201T000000Z-default1")


@pytest.fixture(scope="module")
def seed_model() -> AnomalyModel:
    return train_model([parse_item(d) for d in snapshot_docs()]).with_version("20261201T000000Z-seed0001")


class Interleaved(FakeSource):
    """Polls the partition it has handed out least of (so every swap point falls in both partitions)."""

    def poll(self, timeout_ms: int, max_records: int) -> dict[tuple[str, int], list[Rec]]:
        left = [tp for tp in sorted(self.assigned) if self.position[tp] < len(self.records[tp])]
        if not left:
            return {}
        tp = min(left, key=lambda t: self.position[t])
        recs = self.records[tp][self.position[tp] : self.position[tp] + max_records]
        self.position[tp] += len(recs)
        return {tp: recs}


class PlannedWatcher:
    """Hands over the next planned model once the source has handed out that many records."""

    def __init__(self, source: FakeSource, plan: list[tuple[int, Model]]) -> None:
        self.source, self.plan = source, list(plan)
        self.first_check_done = threading.Event()
        self.first_check_done.set()

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def take(self) -> Model | None:
        if self.plan and sum(self.source.position.values()) >= self.plan[0][0]:
            return self.plan.pop(0)[1]
        return None


class CommittedSource(Interleaved):
    """A FakeSource that answers ``committed`` with the offsets a sink committed (a restarted group)."""

    def __init__(
        self, records: dict[tuple[str, int], list[Rec]], committed: dict[tuple[str, int], int]
    ) -> None:
        super().__init__(records)
        self.position.update(committed)
        self._committed = dict(committed)

    def committed(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        return {tp: self._committed.get(tp) for tp in partitions}


def run(source: FakeSource, sink: LoggingSink, plan: list[tuple[int, Model]], *, group_field: str = "category",
        events: int) -> ScoringService:  # fmt: skip
    seeds = SnapshotSeeds(snapshot_docs(), group_field=group_field)
    ctx = ChangeContext(StateStore(sink.changelog), sink.changelog.topic, seeds)
    loop = ScoringService(source=source, sink=sink, watcher=PlannedWatcher(source, plan), config=CONFIG,  # type: ignore[arg-type]
                          max_poll_records=40, retry_backoff_s=0.0, state=ctx)  # fmt: skip
    assert loop.run(max_events=events, timeout=60).events_in == events
    return loop


def decisions_by_model(sink: LoggingSink) -> dict[str, dict[tuple[int, int], dict[str, Any]]]:
    """model version -> (partition, offset) -> decision event (every decision: the decisions topic)."""
    out: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    for batch in sink.published:
        for o in batch:
            if o.topic == "decisions":
                event = orjson.loads(o.value or b"")
                where = (event["source"]["partition"], event["source"]["offset"])
                out.setdefault(event["model_version"], {})[where] = event
    return out


def replay_from_seed(detector: ChangeDetector, recs: dict[Any, list[Rec]], where: set[tuple[int, int]],
                     group_field: str = "category") -> dict[tuple[int, int], float]:  # fmt: skip
    """Scores of the rows at ``where``, replayed from the inventory snapshot (a fresh state)."""
    table = detector.baseline(parse_updates(snapshot_docs(), group_field=group_field)[0])
    rows = [r for tp in sorted(recs) for r in recs[tp] if (r.partition, r.offset) in where]
    batch, rejects = parse_updates([orjson.loads(r.value) for r in rows], group_field=group_field)
    assert not rejects
    decisions, _ = detector.decide_batch(table, batch)
    return {
        (r.partition, r.offset): float(decisions.scores[i])
        for i, r in enumerate(rows)
        if i not in decisions.rejected
    }


def scores(events: dict[tuple[int, int], dict[str, Any]]) -> dict[tuple[int, int], float]:
    return {where: e["score"] for where, e in events.items()}


def test_default_seed_default_in_one_process_starts_the_state_afresh_after_the_seed(
    detector: ChangeDetector, seed_model: AnomalyModel
) -> None:
    recs = stream(seed=21)
    again = detector.with_version("20261201T000000Z-default2")
    sink = LoggingSink(MemoryChangelog())
    source = Interleaved(recs)
    loop = run(source, sink, [(0, detector), (200, seed_model), (400, again)], events=600)
    by_model = decisions_by_model(sink)
    first, seeded, last = by_model[detector.version], by_model[seed_model.version], by_model[again.version]  # type: ignore[index]
    assert len(first) >= 150 and len(seeded) >= 150 and len(last) >= 150
    assert all("severity_score" not in e for e in seeded.values())  # the seed path's events
    assert {p for p, _ in seeded} == {0, 1}  # the seed decided updates of both partitions
    assert scores(first) == pytest.approx(replay_from_seed(detector, recs, set(first)), abs=1e-12)
    # the state did not follow the seed's updates: the change detector starts afresh at the swap back
    assert scores(last) == pytest.approx(replay_from_seed(again, recs, set(last)), abs=1e-12)
    resets = [r for r in loop.state.store.restores if r.reset]  # type: ignore[union-attr]
    assert {r.partition for r in resets} == {0, 1} and all("seed model" in r.reset for r in resets)
    assert loop.metrics.registry.get_sample_value("stockwatch_state_fresh_starts_total") == len(resets)


def test_a_restart_after_the_seed_served_starts_afresh_from_the_lineage_record(
    detector: ChangeDetector, seed_model: AnomalyModel
) -> None:
    recs = stream(seed=22)
    changelog = MemoryChangelog()
    first = LoggingSink(changelog)
    run(Interleaved(recs), first, [(0, detector)], events=200)
    lineage = [Lineage.decode(v) for k, v in changelog.partitions[0] if k == LINEAGE_KEY]
    assert lineage and lineage[-1] is not None and lineage[-1].group_field == "category"
    second = LoggingSink(changelog)  # another process serves the seed model: nothing reaches the changelog
    run(CommittedSource(recs, first.commits[-1]), second, [(0, seed_model)], events=200)
    assert not [o for batch in second.published for o in batch if o.topic == changelog.topic]
    third = LoggingSink(changelog)
    loop = run(CommittedSource(recs, second.commits[-1]), third, [(0, detector)], events=200)
    last = decisions_by_model(third)[detector.version]  # type: ignore[index]
    assert scores(last) == pytest.approx(replay_from_seed(detector, recs, set(last)), abs=1e-12)
    resets = [r.reset for r in loop.state.store.restores]  # type: ignore[union-attr]
    assert resets and all("decided without it" in r for r in resets)


def test_a_restart_of_the_same_detector_restores_its_state_without_a_fresh_start(
    detector: ChangeDetector,
) -> None:
    recs = stream(seed=23)
    changelog = MemoryChangelog()
    first = LoggingSink(changelog)
    run(Interleaved(recs), first, [(0, detector)], events=300)
    second = LoggingSink(changelog)
    loop = run(CommittedSource(recs, first.commits[-1]), second, [(0, detector)], events=300)
    assert [r.reset for r in loop.state.store.restores] == ["", ""]  # type: ignore[union-attr]
    everything = decisions_by_model(first)[detector.version] | decisions_by_model(second)[detector.version]  # type: ignore[index]
    assert scores(everything) == pytest.approx(replay_from_seed(detector, recs, set(everything)), abs=1e-12)


def test_another_group_field_starts_the_state_afresh_in_process_and_after_a_restart(
    detector: ChangeDetector,
) -> None:
    docs = snapshot_docs()
    by_shelf = train_detector(parse_updates(docs, group_field="shelf")[0], group_field="shelf")
    by_shelf = by_shelf.with_version("20261201T000000Z-shelf001")
    assert by_shelf.metadata.group_field == "shelf"
    recs = stream(seed=24)
    changelog = MemoryChangelog()
    sink = LoggingSink(changelog)
    loop = run(Interleaved(recs), sink, [(0, detector), (300, by_shelf)], events=400)
    swapped = decisions_by_model(sink)[by_shelf.version]  # type: ignore[index]
    assert len(swapped) >= 50
    assert scores(swapped) == pytest.approx(
        replay_from_seed(by_shelf, recs, set(swapped), "shelf"), abs=1e-12
    )
    assert any("groups peers by 'category'" in r.reset for r in loop.state.store.restores)  # type: ignore[union-attr]
    last = [Lineage.decode(v) for k, v in changelog.partitions[0] if k == LINEAGE_KEY][-1]
    assert last is not None and last.group_field == "shelf"
    assert [k for k, _ in changelog.partitions[0]].count(RESET_KEY) == 1  # the fresh start, marked once
    # a restart with the category detector again: the lineage names "shelf", so it starts afresh too
    again = LoggingSink(changelog)
    restarted = run(CommittedSource(recs, sink.commits[-1]), again, [(0, detector)], events=200)
    assert all("groups peers by 'shelf'" in r.reset for r in restarted.state.store.restores)  # type: ignore[union-attr]
    tail = decisions_by_model(again)[detector.version]  # type: ignore[index]
    assert scores(tail) == pytest.approx(replay_from_seed(detector, recs, set(tail)), abs=1e-12)


def test_lineage_values_never_take_a_records_length_and_a_bad_one_is_ignored() -> None:
    for field in ("c", "x" * 40, "x" * 49, "category"):
        for after in (0, 9, 123456789, 10**15):
            assert len(Lineage(field, after).encode()) != 88
    assert Lineage.decode(b"not json") is None and Lineage.decode(b'{"after": 1}') is None
    assert Lineage.decode(Lineage("c", 9).encode()) == Lineage("c", 9)


def test_forged_item_states_in_the_changelog_are_dropped_and_their_items_decided_from_the_seed(
    detector: ChangeDetector,
) -> None:
    recs = stream(seed=5)
    changelog = MemoryChangelog()
    ids = [f"sku-{i}" for i in range(340)]  # every item of the stream, and some only it has
    forged = np.zeros(len(ids), STATE_DTYPE)
    forged["stock"], forged["price"], forged["ref_price"] = np.nan, np.inf, 1.0
    for p in (0, 1):
        mine = [i for i in ids if int(i[4:]) % 2 == p]
        changelog.append(changelog_records(changelog.topic, p, mine, forged[: len(mine)], [-1] * len(mine)))
    sink = LoggingSink(changelog)
    loop = run(Interleaved(recs), sink, [(0, detector)], events=300)
    decided = decisions_by_model(sink)[detector.version]  # type: ignore[index]
    assert len(decided) >= 250
    # as if the changelog were empty: every item starts from the inventory seed (or its first update)
    assert scores(decided) == pytest.approx(replay_from_seed(detector, recs, set(decided)), abs=1e-12)
    dropped = [r.dropped for r in loop.state.store.restores]  # type: ignore[union-attr]
    assert sum(dropped) == len(ids) and all(dropped)
    assert loop.metrics.registry.get_sample_value("stockwatch_state_restore_dropped_total") == len(ids)
