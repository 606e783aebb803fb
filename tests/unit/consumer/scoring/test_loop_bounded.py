"""The loop never stalls on one record (pure logic with fakes; the real broker: test_poison.py).

A sink with a size limit refuses outputs as the broker does (too large, per output); the loop
must reduce the dead letter, park the record if even that is refused, keep retrying transient
failures without parking anything, and always end with every offset committed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pytest

from consumer.ports import DeliveryError, OutputFailure, OutputRecord
from consumer.scoring.batch import BatchConfig
from consumer.scoring.health import StallWatch
from consumer.scoring.loop import ScoringService
from consumer.scoring.metrics import ConsumerMetrics
from consumer.scoring.poison import DLQ_HEADER_TRUNCATED, MAX_RECORD_ATTEMPTS, REDUCED_VALUE_BYTES, source_of
from tests.fakes import Acked, FakeSource, FakeWatcher, Rec, item

P0, P1 = ("in", 0), ("in", 1)
POISON = 12  # the offset of the oversize record in P0


def records(tp: tuple[str, int], n: int, *, poison: int | None = None) -> list[Rec]:
    out = []
    for i in range(n):
        value = orjson.dumps(item(i, stock=50_000 if i % 5 == 0 else 50))
        if i == poison:
            value = b'{"item_id": "X", "blob": "' + b"z" * 300_000 + b'"}'  # a dead letter of 300 kB
        out.append(Rec(tp[0], tp[1], i, 1_000 + i, None, value, []))
    return out


class LimitedSink:
    """Refuses (per output, as too large) outputs over ``limits[topic]`` bytes; ``transient`` publishes
    fail first as a broker outage would. ``raise_errors``: failures raise from publish (exactly-once)."""

    def __init__(self, limits: Mapping[str, int], *, transient: int = 0, raise_errors: bool = False) -> None:
        self.limits = limits
        self.transient = transient
        self.raise_errors = raise_errors
        self.accepted: list[OutputRecord] = []
        self.refused: list[OutputRecord] = []
        self.commits: list[dict[tuple[str, int], int]] = []

    def publish(self, outputs: Sequence[OutputRecord], offsets: Mapping[Any, int], source: Any) -> Acked:
        error = None
        if self.transient:
            self.transient -= 1
            failures = [OutputFailure(i, "transient", "timed out") for i in range(len(outputs))]
            error = DeliveryError("broker down", failures=failures)
        else:
            failures = [
                OutputFailure(i, "too_large", "MSG_SIZE_TOO_LARGE")
                for i, o in enumerate(outputs)
                if len(o.value or b"") > self.limits.get(o.topic, 1 << 30)
            ]
            failed = {f.index for f in failures}
            self.accepted += [o for i, o in enumerate(outputs) if i not in failed]
            self.refused += [outputs[i] for i in sorted(failed)]
            if failures:
                error = DeliveryError("refused", failures=failures)
        if error is not None and self.raise_errors:
            raise error
        return Acked(error)

    def commit(self, offsets: Mapping[tuple[str, int], int], source: Any, *, sync: bool) -> None:
        self.commits.append(dict(offsets))

    def interrupt(self) -> None: ...

    def discard(self) -> bool:
        return False

    def close(self, timeout_s: float = 10.0) -> None: ...

    def final(self, tp: tuple[str, int]) -> int:
        return max((c[tp] for c in self.commits if tp in c), default=0)


def service(source: FakeSource, sink: LimitedSink, **kw: Any) -> ScoringService:
    return ScoringService(
        source=source,
        sink=sink,
        watcher=FakeWatcher(),  # type: ignore[arg-type]
        config=BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq", max_message_bytes=4096),
        max_poll_records=10,
        **{"retry_backoff_s": 0.0, **kw},
    )


def scored_offsets(sink: LimitedSink, tp: tuple[str, int]) -> set[int]:
    return {s[2] for o in sink.accepted if o.topic == "anomalies" and (s := source_of(o)) and s[:2] == tp}


@pytest.mark.parametrize("exactly_once", [False, True])
def test_a_refused_dead_letter_is_reduced_and_everything_after_it_goes_out(exactly_once: bool) -> None:
    source = FakeSource({P0: records(P0, 30, poison=POISON), P1: records(P1, 20)})
    sink = LimitedSink({"dlq": 100_000}, raise_errors=exactly_once)
    stats = service(source, sink, exactly_once=exactly_once).run(max_events=50, timeout=20)
    assert stats.stopped_by == "max_events" and stats.parked == 0
    dead = [o for o in sink.accepted if o.topic == "dlq"]
    assert len(dead) == 1 and source_of(dead[0]) == ("in", 0, POISON)
    assert len(dead[0].value or b"") == REDUCED_VALUE_BYTES
    assert dict(dead[0].headers)[DLQ_HEADER_TRUNCATED] == b"value"
    assert len(sink.refused) == 1  # refused once in full, accepted reduced
    assert scored_offsets(sink, P0) == set(range(0, 30, 5)) and scored_offsets(sink, P1) == set(
        range(0, 20, 5)
    )
    assert sink.final(P0) == 30 and sink.final(P1) == 20


def test_a_dead_letter_refused_even_reduced_is_parked_and_its_offset_committed_past() -> None:
    source = FakeSource({P0: records(P0, 30, poison=POISON), P1: records(P1, 20)})
    sink = LimitedSink({"dlq": 1024})
    loop = service(source, sink)
    stats = loop.run(max_events=50, timeout=20)
    assert stats.parked == 1 and stats.stopped_by == "max_events"
    assert len(sink.refused) == MAX_RECORD_ATTEMPTS  # bounded: never retried forever
    assert not [o for o in sink.accepted if o.topic == "dlq"]
    assert (
        loop.metrics.registry.get_sample_value("stockwatch_parked_records_total", {"reason": "too_large"})
        == 1
    )
    assert scored_offsets(sink, P0) == set(range(0, 30, 5)) and scored_offsets(sink, P1) == set(
        range(0, 20, 5)
    )
    assert sink.final(P0) == 30 and sink.final(P1) == 20


def test_transient_failures_are_retried_and_nothing_is_parked() -> None:
    source = FakeSource({P0: records(P0, 30)})
    sink = LimitedSink({}, transient=6)
    stats = service(source, sink, retry_backoff_s=0.001).run(max_events=30, timeout=20)
    assert stats.parked == 0 and stats.delivery_failures == 6 and stats.stopped_by == "max_events"
    assert scored_offsets(sink, P0) == set(range(0, 30, 5)) and sink.final(P0) == 30


class DownAudit:
    def __init__(self) -> None:
        self.calls = 0

    def write(self, anomalies: Sequence[dict[str, Any]]) -> int:
        self.calls += 1
        raise DeliveryError("mongo down")

    def close(self) -> None: ...


def test_a_failing_audit_is_skipped_after_bounded_attempts_and_outputs_still_go_out() -> None:
    source = FakeSource({P0: records(P0, 30)})
    sink, audit = LimitedSink({}), DownAudit()
    loop = service(source, sink, audit=audit)
    stats = loop.run(max_events=30, timeout=20)
    assert stats.stopped_by == "max_events" and sink.final(P0) == 30
    assert scored_offsets(sink, P0) == set(range(0, 30, 5))
    failures = loop.metrics.registry.get_sample_value("stockwatch_audit_failures_total")
    assert failures == audit.calls and 3 <= audit.calls < 6  # later batches skip during the cooldown
    assert (loop.metrics.registry.get_sample_value("stockwatch_audit_skipped_total") or 0) == 6


def test_stall_watch_flags_a_busy_partition_whose_commit_does_not_move() -> None:
    metrics = ConsumerMetrics()
    watch = StallWatch(60.0, metrics)
    both = {P0, P1}
    assert watch.update(0.0, both, both, {P0: 5, P1: 5}) == []
    assert watch.update(59.0, both, both, {P0: 5, P1: 9}) == []
    assert watch.update(61.0, both, both, {P0: 5, P1: 9}) == [P0]  # P1 moved at 59 s
    gauge = "stockwatch_partition_stalled"
    assert metrics.registry.get_sample_value(gauge, {"topic": "in", "partition": "0"}) == 1
    assert metrics.registry.get_sample_value(gauge, {"topic": "in", "partition": "1"}) == 0
    assert watch.update(62.0, both, {P1}, {P0: 5, P1: 9}) == []  # nothing left to do in P0
    assert watch.update(200.0, {P1}, {P1}, {P1: 9}) == [P1]
    assert metrics.registry.get_sample_value(gauge, {"topic": "in", "partition": "0"}) == 0  # revoked


class LaggingSource(FakeSource):
    def lag(self) -> dict[tuple[str, int], int]:
        return {tp: len(recs) - self.position[tp] for tp, recs in self.records.items()}


def test_a_partition_that_cannot_commit_is_reported_stalled_while_the_loop_stays_alive() -> None:
    source = LaggingSource({P0: records(P0, 30)})
    sink = LimitedSink({}, transient=10**6)  # a broker outage that does not end
    loop = service(source, sink, retry_backoff_s=0.05, stall_after_s=1.0)
    stats = loop.run(timeout=3.5)
    assert stats.stopped_by == "timeout" and stats.parked == 0 and not sink.commits
    assert loop.health.stalled == ["in[0]"]
    assert "partitions stalled" in " ".join(loop.health.readyz()[1]["missing"])
    assert (
        loop.metrics.registry.get_sample_value(
            "stockwatch_partition_stalled", {"topic": "in", "partition": "0"}
        )
        == 1
    )
    assert loop.health.healthz()[0]  # the loop kept ticking through the retries


class WedgedSink(LimitedSink):
    """Every transaction fails (a broker that never answers in time); records the stop request."""

    def __init__(self) -> None:
        super().__init__({}, transient=1 << 30, raise_errors=True)
        self.interrupted = 0

    def interrupt(self) -> None:
        self.interrupted += 1


def test_a_stop_while_transactions_fail_is_honoured_and_reports_the_offsets_uncommitted() -> None:
    source, sink = FakeSource({P0: records(P0, 30)}), WedgedSink()
    loop = service(source, sink, exactly_once=True, retry_backoff_s=0.01)
    threading.Timer(0.5, loop.request_stop).start()
    stats = loop.run(timeout=60)
    assert stats.stopped_by == "signal" and stats.delivery_failures > 0
    assert sink.interrupted == 1  # the sink was told, so a wedged call gives up within seconds
    assert not stats.final_commit and "did not commit" in stats.final_error  # consume exits non-zero
    assert sink.commits == []


class RefusalsThenOutage(LimitedSink):
    """Refuses the poison's dead letter (full, then reduced) and, right after, fails once as a broker
    whose producer needs an epoch bump would: an ordinary failure after a burst of at-once retries."""

    def __init__(self) -> None:
        super().__init__({"dlq": 1024}, raise_errors=True)
        self.outage_done = False

    def publish(self, outputs: Sequence[OutputRecord], offsets: Mapping[Any, int], source: Any) -> Acked:
        if len(self.refused) == MAX_RECORD_ATTEMPTS and not self.outage_done:
            self.outage_done = True
            raise DeliveryError("OUT_OF_ORDER_SEQUENCE_NUMBER, requires epoch bump")
        return super().publish(outputs, offsets, source)


def test_refused_outputs_retried_at_once_do_not_lengthen_the_next_ordinary_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = FakeSource({P0: records(P0, 30, poison=POISON)})
    sink = RefusalsThenOutage()
    loop = service(source, sink, exactly_once=True, retry_backoff_s=0.2)
    with caplog.at_level("WARNING", logger="consumer.scoring.loop"):
        stats = loop.run(max_events=30, timeout=20)
    assert stats.stopped_by == "max_events" and stats.parked == 1 and sink.outage_done
    pauses = [r.args[-1] for r in caplog.records if r.msg.startswith("batch not delivered")]
    # three refusals retried at once, then the outage waits the first backoff step (not 0.2 x 2**3)
    assert pauses == [0.0, 0.0, 0.0, 0.2]
    assert sink.final(P0) == 30
