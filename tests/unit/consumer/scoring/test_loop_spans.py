"""Exactly-once transactions that span batches, as the loop drives them (pure logic: the real
:mod:`consumer.adapters.spans` around a fake transaction; the real broker: the integration and
fault suites)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pytest

from consumer.adapters.spans import Span, SpanDelivery
from consumer.ports import DeliveryError, MongoUnavailableError, OutputRecord, StaleMemberError
from consumer.scoring.batch import BatchConfig
from consumer.scoring.loop import ScoringService
from tests.fakes import TP, FakeSource, FakeWatcher, Rec, item


class CountingSource(FakeSource):
    polls = 0

    def poll(self, timeout_ms: int, max_records: int) -> dict[tuple[str, int], list[Rec]]:
        self.polls += 1
        return super().poll(timeout_ms, max_records)


class SpanningSink:
    """Batches join the open transaction; its outputs become visible when it commits. The first
    ``failing`` commits raise ``error`` (the sink aborted: nothing of them is visible)."""

    def __init__(
        self, source: CountingSource, *, failing: int = 0, error: DeliveryError | None = None
    ) -> None:
        self.source = source
        self.failing, self.error = failing, error or DeliveryError("transaction aborted")
        self.span: Span | None = None
        self.open: list[OutputRecord] = []
        self.visible: list[OutputRecord] = []
        self.commits: list[tuple[dict[tuple[str, int], int], int]] = []  # offsets, polls made by then

    def publish(
        self, outputs: Sequence[OutputRecord], offsets: Mapping[Any, int], source: Any
    ) -> SpanDelivery:
        if self.span is None:
            self.span, self.open = Span(self._end), []
        self.open += outputs
        self.span.add(offsets)
        return SpanDelivery(self.span)  # never due: an interval far longer than the test

    def _end(self, offsets: dict[tuple[str, int], int]) -> None:
        self.span = None
        if self.failing:
            self.failing -= 1
            raise self.error
        self.commits.append((dict(offsets), self.source.polls))
        self.visible += self.open

    def discard(self) -> bool:
        span, self.span = self.span, None
        if span is None or span.ended:
            return False
        span.fail(DeliveryError("dropped"))
        return True

    def commit(self, offsets: Mapping[Any, int], source: Any, *, sync: bool) -> None: ...
    def interrupt(self) -> None: ...
    def close(self, timeout_s: float = 10.0) -> None: ...


def records(n: int) -> list[Rec]:
    return [Rec(*TP, i, 1_000 + i, None, orjson.dumps(item(i, stock=50_000)), []) for i in range(n)]


def run(n: int, sink_kw: dict[str, Any] | None = None, **kw: Any) -> tuple[SpanningSink, CountingSource, Any]:
    source = CountingSource({TP: records(n)})
    sink = SpanningSink(source, **(sink_kw or {}))
    loop = ScoringService(
        source=source,
        sink=sink,
        watcher=FakeWatcher(),  # type: ignore[arg-type]
        config=BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq"),
        max_poll_records=10,
        exactly_once=True,
        retry_backoff_s=0.0,
        **kw,
    )
    return sink, source, loop.run(timeout=0.5)


def offsets_of(sink: SpanningSink) -> list[int]:
    return sorted(orjson.loads(o.value or b"{}")["source"]["offset"] for o in sink.visible)


def test_an_idle_poll_commits_the_open_transaction_at_once() -> None:
    sink, _, stats = run(15)  # batches of 10 and 5: two in flight, no reason to wait for them
    assert sink.commits[0] == ({TP: 15}, 3)  # committed at the third poll, the first empty one
    assert offsets_of(sink) == list(range(15)) and stats.events_in == 15


def test_a_transaction_holds_at_most_three_batches() -> None:
    sink, _, _ = run(60)
    assert [offsets[TP] for offsets, _ in sink.commits] == [30, 60]
    assert offsets_of(sink) == list(range(60))


def test_a_failed_transaction_rewinds_all_its_batches_and_publishes_each_record_once() -> None:
    sink, source, stats = run(20, {"failing": 1})
    assert source.seeks == [{TP: 0}]  # both batches of the aborted transaction are read again
    assert offsets_of(sink) == list(range(20))  # the aborted transaction's outputs never show
    assert sink.commits[-1][0] == {TP: 20} and stats.events_in == 20 and stats.delivery_failures == 1


def test_offsets_refused_at_a_deferred_commit_make_the_member_rejoin_without_a_rewind() -> None:
    sink, source, stats = run(20, {"failing": 1, "error": StaleMemberError("generation 3 is gone")})
    assert getattr(source, "rejoined", 0) == 1 and source.seeks == []
    assert sink.visible == []  # the refused transaction's outputs never show
    assert stats.delivery_failures == 0


@pytest.mark.parametrize("failing", [0, 1], ids=["commits", "commit-fails-too"])
def test_a_batch_that_cannot_be_decided_does_not_read_the_open_transactions_batches_again(
    monkeypatch: Any, failing: int
) -> None:
    # the seed lookup (MongoUnavailableError) or a restore (KafkaUnavailableError) fails for the
    # third batch while the first two wait in the open transaction: the rewind to the committed
    # offsets must not publish them a second time into it
    real, calls = ScoringService._decide, []

    def flaky(self: ScoringService, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise MongoUnavailableError("could not load the inventory seed: server selection timeout")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ScoringService, "_decide", flaky)
    sink, source, stats = run(40, {"failing": failing})
    assert offsets_of(sink) == list(range(40))  # was 0..19 twice: both batches in one transaction twice
    # committed: only the undecided batch is read again; else from the aborted transaction's start
    assert source.seeks == ([{TP: 20}] if not failing else [{TP: 0}, {TP: 0}]) and stats.events_in == 40


@pytest.mark.parametrize(
    "error", [DeliveryError("broker away"), StaleMemberError("generation 3 is gone")], ids=["failed", "stale"]
)
def test_a_transaction_that_fails_at_the_stop_makes_the_last_commit_fail(error: DeliveryError) -> None:
    # SIGTERM while a transaction spans two batches: the drain commits it; refused (a broker away, or
    # the group went on without this member), the run must say so (`stockwatch consume` exits 3)
    class StoppedAtSecondPoll(CountingSource):
        def poll(self, timeout_ms: int, max_records: int) -> dict[tuple[str, int], list[Rec]]:
            out = super().poll(timeout_ms, max_records)
            if self.polls == 2:
                loop.request_stop()
            return out

    source = StoppedAtSecondPoll({TP: records(25)})
    sink = SpanningSink(source, failing=1, error=error)
    loop = ScoringService(
        source=source,
        sink=sink,
        watcher=FakeWatcher(),  # type: ignore[arg-type]
        config=BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq"),
        max_poll_records=10,
        exactly_once=True,
        retry_backoff_s=0.0,
    )
    stats = loop.run(timeout=10)
    assert stats.stopped_by == "signal" and sink.visible == [] and stats.events_in == 0
    assert not stats.final_commit and stats.final_error == "the last transaction did not commit"
