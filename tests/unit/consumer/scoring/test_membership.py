"""Group membership in the loop (pure logic with in-memory fakes; the broker's side is in
tests/integration/test_membership.py): commit on revocation, the re-join of a stale member, the
stop of a fenced one, what /readyz says, and the hooks a per-partition state store subscribes to."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

import consumer.scoring.loop as loop_module
import consumer.scoring.membership as membership_module
from consumer.ports import FencedInstanceError, StaleMemberError
from consumer.scoring.batch import BatchConfig
from consumer.scoring.health import HealthState
from consumer.scoring.loop import ScoringService
from consumer.scoring.membership import COMMIT_FAILURES_UNREADY
from tests.fakes import TP, FakeSink, FakeSource, FakeWatcher, Rec, item

OTHER = ("in", 1)


def records(tp: tuple[str, int], n: int) -> list[Rec]:
    return [Rec(tp[0], tp[1], i, 1_000 + i, None, orjson.dumps(item(i)), []) for i in range(n)]


class RefusingSink(FakeSink):
    """Refuses the ``refuse_at``-th commit (0-based) with ``error``; every other one goes through."""

    def __init__(self, error: BaseException, refuse_at: int = 0) -> None:
        super().__init__()
        self.error = error
        self.refuse_at = refuse_at
        self.attempts = 0

    def commit(self, offsets: Mapping[tuple[str, int], int], source: Any, *, sync: bool) -> None:
        self.attempts += 1
        if self.attempts - 1 == self.refuse_at or self.refuse_at < 0:
            raise self.error
        self.commits.append(dict(offsets))


class RejoiningSource(FakeSource):
    """A re-join drops the assignment and, like a client, resumes from the committed offsets."""

    def __init__(self, records: dict[tuple[str, int], list[Rec]], sink: FakeSink) -> None:
        super().__init__(records)
        self.sink = sink
        self.rejoined = 0

    def rejoin(self) -> None:
        self.rejoined += 1
        committed = self.sink.commits[-1] if self.sink.commits else {}
        self.position = {tp: committed.get(tp, 0) for tp in self.records}


def service(source: FakeSource, sink: FakeSink, **kw: Any) -> ScoringService:
    return ScoringService(
        source=source,
        sink=sink,
        watcher=FakeWatcher(),  # type: ignore[arg-type]
        config=BatchConfig(
            anomaly_topic="anomalies", dlq_topic="dlq", decisions_topic="decisions", max_message_bytes=4096
        ),
        max_poll_records=10,
        retry_backoff_s=0.0,
        **kw,
    )


def decided(sink: FakeSink) -> list[tuple[int, int]]:
    out = []
    for batch in sink.published:
        for o in batch:
            if o.topic == "decisions":
                src = orjson.loads(o.value or b"")["source"]
                out.append((src["partition"], src["offset"]))
    return out


def test_a_stale_member_drops_its_work_in_flight_and_rejoins_instead_of_scoring_on() -> None:
    sink = RefusingSink(StaleMemberError("IllegalGeneration"), refuse_at=1)
    source = RejoiningSource({TP: records(TP, 40)}, sink)
    loop = service(source, sink)
    heard: list[tuple[str, list[tuple[str, int]]]] = []
    loop.membership.add_listener(on_revoked=lambda parts: heard.append(("revoked", list(parts))))
    stats = loop.run(timeout=1.0)  # the input is drained (and committed when idle) well before
    assert source.rejoined == 1 and loop.membership.rejoins == 1
    assert heard == [("revoked", [TP])]  # a re-join is a loss: no listener keeps state of it
    assert sink.commits[-1] == {TP: 40} and stats.final_commit
    # the batches after the last commit were decided again after the re-join, nothing was skipped
    seen = decided(sink)
    assert set(seen) == {(0, o) for o in range(40)}
    assert len(seen) - len(set(seen)) <= 20  # the refused batch and the one in flight


def test_a_fenced_member_stops_and_says_its_last_commit_failed() -> None:
    sink = RefusingSink(FencedInstanceError("FencedInstanceId"), refuse_at=-1)
    source = FakeSource({TP: records(TP, 1000)})
    stats = service(source, sink).run(timeout=10)
    assert stats.stopped_by == "fenced" and not stats.final_commit
    assert stats.events_in < 1000  # it stopped at once, not at the end of the input


class RefusingAtShutdown(FakeSink):
    """The group stops accepting this member's commits when it stops (its sync commits)."""

    def commit(self, offsets: Mapping[tuple[str, int], int], source: Any, *, sync: bool) -> None:
        if sync:
            raise StaleMemberError("UnknownMemberId")
        self.commits.append(dict(offsets))


def test_a_shutdown_whose_final_commit_is_refused_says_so() -> None:
    sink = RefusingAtShutdown()
    stats = service(FakeSource({TP: records(TP, 20)}), sink).run(max_events=20, timeout=10)
    assert stats.stopped_by == "max_events" and not stats.final_commit


def test_revocation_settles_and_hands_back_the_revoked_offsets_after_the_hooks() -> None:
    sink = FakeSink()
    source = FakeSource({TP: records(TP, 20), OTHER: records(OTHER, 20)})
    loop = service(source, sink, commit_interval_s=3600.0)  # nothing committed between batches
    order: list[str] = []
    loop.membership.add_listener(
        on_assigned=lambda parts: order.append(f"assigned {sorted(parts)}"),
        on_revoked=lambda parts: order.append(f"revoked {sorted(parts)}"),
    )
    loop.run(max_events=30, timeout=10)
    offsets = loop.membership.on_revoked([OTHER])
    assert offsets == {OTHER: 10}  # what was acknowledged of it (its first batch)
    assert order == [f"revoked {[OTHER]}"]
    assert OTHER not in loop.ledger.committable()  # forgotten: never committed by this member again
    loop.membership.on_assigned([OTHER])
    assert order[-1] == f"assigned {[OTHER]}"


def test_exactly_once_commits_nothing_on_revocation() -> None:
    source, sink = FakeSource({TP: records(TP, 20)}), FakeSink()
    loop = service(source, sink, exactly_once=True)
    loop.run(max_events=20, timeout=10)
    assert loop.membership.on_revoked([TP]) == {}


def test_lost_partitions_are_forgotten_without_a_commit() -> None:
    source, sink = FakeSource({TP: records(TP, 20)}), FakeSink()
    loop = service(source, sink, commit_interval_s=3600.0)
    loop.run(max_events=20, timeout=10)
    lost: list[Sequence[tuple[str, int]]] = []
    loop.membership.add_listener(on_revoked=lost.append)
    loop.membership.on_lost([TP])
    assert lost == [[TP]] and loop.ledger.committable() == {}


class Unstable(FakeSource):
    state = "joining"

    def group_state(self) -> str:
        return self.state


def test_readyz_says_503_out_of_a_stable_group_and_after_refused_commits() -> None:
    source, health = Unstable({TP: []}), HealthState()
    loop = service(source, FakeSink(), health=health, unstable_after_s=10.0)
    health.model_version, health.assigned = "v1", 1
    loop.membership.update(100.0, commit_failures=0)
    assert health.readyz()[0]  # a rebalance takes a moment
    loop.membership.update(111.0, commit_failures=0)
    ok, body = health.readyz()
    assert not ok and "not in a stable group (joining) for 11s" in body["missing"]
    source.state = "stable"
    loop.membership.update(112.0, commit_failures=COMMIT_FAILURES_UNREADY)
    ok, body = health.readyz()
    assert not ok and body["missing"] == [f"{COMMIT_FAILURES_UNREADY} offset commits refused in a row"]
    loop.membership.update(113.0, commit_failures=0)
    assert health.readyz()[0]


def test_a_member_that_did_not_run_for_longer_than_its_session_rejoins() -> None:
    """A frozen process was evicted meanwhile: what it fetched before is not its to score."""
    sink = FakeSink()
    source = RejoiningSource({TP: records(TP, 20)}, sink)
    loop = service(source, sink, session_timeout_s=6.0)
    assert loop.membership.alive(100.0) and loop.membership.alive(105.0)
    assert not loop.membership.alive(112.0)  # 7 s without a tick
    assert source.rejoined == 1 and loop.membership.rejoins == 1
    assert loop.membership.alive(113.0)


def test_time_spent_waiting_in_a_call_of_its_own_is_no_freeze() -> None:
    """A commit or an acknowledgement the loop waits for is not counted; a freeze elsewhere still is."""
    sink = FakeSink()
    source = RejoiningSource({TP: records(TP, 20)}, sink)
    loop = service(source, sink, session_timeout_s=6.0)
    clock = iter([101.0, 111.0]).__next__  # a 10 s commit while the broker is away
    assert loop.membership.alive(100.0)
    with loop.membership.waiting(clock):
        pass
    assert loop.membership.alive(112.0)  # 2 s of its own running since 100
    assert source.rejoined == 0
    assert not loop.membership.alive(119.0)  # 7 s without a tick, outside any wait
    assert source.rejoined == 1


class Clock:
    """time.monotonic for the loop and its membership: a tick per call, and jumps by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        self.now += 0.001
        return self.now


class SlowCommitSink(FakeSink):
    """The first synchronous commit takes 10 s (a broker outage); the input then goes on."""

    def __init__(self, source: FakeSource, more: list[Rec], clock: Clock) -> None:
        super().__init__()
        self.source, self.more, self.clock = source, more, clock

    def commit(self, offsets: Mapping[tuple[str, int], int], source: Any, *, sync: bool) -> None:
        super().commit(offsets, source, sync=sync)
        if sync and self.more:
            self.clock.now += 10.0
            self.source.records[TP].extend(self.more)
            self.more = []


def test_a_synchronous_commit_longer_than_the_session_does_not_make_the_member_rejoin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The idle commit of a broker outage blocked 10 s (> the 6 s session) and the member, taking
    that for a freeze, dropped its work and re-joined when the broker came back."""
    clock = Clock()
    fake_time = SimpleNamespace(monotonic=clock.monotonic, perf_counter=time.perf_counter, time=time.time)
    for module in (loop_module, membership_module):
        monkeypatch.setattr(module, "time", fake_time)
    every = records(TP, 40)
    source = RejoiningSource({TP: every[:20]}, FakeSink())
    sink = SlowCommitSink(source, every[20:], clock)
    source.sink = sink
    loop = service(source, sink, session_timeout_s=6.0)
    stats = loop.run(timeout=20.0)  # of the clock above: the 10 s commit, then ~10,000 calls
    assert loop.membership.rejoins == 0 and source.rejoined == 0
    assert sorted(decided(sink)) == [(0, o) for o in range(40)]  # each once: nothing dropped, redone
    assert sink.commits[-1] == {TP: 40} and stats.final_commit
