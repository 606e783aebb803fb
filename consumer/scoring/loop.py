"""The scoring loop of `stockwatch consume`: poll, decide (:mod:`.batch` seed, :mod:`.change_batch` default
with per-item state), publish, commit once acknowledged (:mod:`.ledger`), retry within bounds
(:mod:`.poison`, :mod:`.recovery`), keep membership honest (:mod:`.membership`). See docs/consume.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from consumer.ports import (
    Audit,
    DeliveryError,
    FencedInstanceError,
    KafkaUnavailableError,
    MongoUnavailableError,
    Sink,
    Source,
    StaleMemberError,
    TopicPart,
    start_offset,
)
from consumer.scoring.audit_guard import AuditGuard
from consumer.scoring.batch import BatchConfig, BatchResult
from consumer.scoring.change_batch import ChangeContext
from consumer.scoring.commits import Committer
from consumer.scoring.health import HealthState, StallWatch
from consumer.scoring.ledger import OffsetLedger
from consumer.scoring.membership import Membership
from consumer.scoring.metrics import ConsumerMetrics
from consumer.scoring.model_gate import ModelGate
from consumer.scoring.model_watcher import ModelWatcher
from consumer.scoring.poison import PoisonRecords
from consumer.scoring.recovery import Recovery
from consumer.scoring.serving import ServedModel, before_poll, decide
from consumer.scoring.state_flush import StateFlush
from consumer.scoring.stats import RunStats

__all__ = ["Audit", "DeliveryError", "RunStats", "ScoringService", "Sink", "Source"]

log = logging.getLogger(__name__)

LAG_REFRESH_S = 1.0
MAX_IN_FLIGHT = 2  # batches whose outputs may still await acknowledgement while the next is scored


class ScoringService:
    """The loop. Collaborators come in ready-made (see :func:`consumer.scoring.wiring.build_service`)."""

    def __init__(
        self,
        *,
        source: Source,
        sink: Sink,
        watcher: ModelWatcher,
        config: BatchConfig,
        metrics: ConsumerMetrics | None = None,
        health: HealthState | None = None,
        audit: Audit | None = None,
        poll_timeout_ms: int = 100,
        max_poll_records: int = 2000,
        retry_backoff_s: float = 1.0,
        commit_interval_s: float = 0.0,
        exactly_once: bool = False,
        stall_after_s: float = 60.0,
        unstable_after_s: float = 45.0,
        session_timeout_s: float = 45.0,
        state: ChangeContext | None = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.watcher = watcher
        self.config = config
        self.metrics = metrics if metrics is not None else ConsumerMetrics()
        self.health = health if health is not None else HealthState()
        self.audit = AuditGuard(audit, self.metrics) if audit is not None else None
        self.poll_timeout_ms = poll_timeout_ms
        self.max_poll_records = max_poll_records
        self.retry_backoff_s = retry_backoff_s
        self.exactly_once = exactly_once
        self.state = state  # the per-item state of the `default` detector
        if state is not None:
            state.store.on_change = self.metrics.state_changed
        self.models = ModelGate(watcher, source, self.metrics, self.health)
        self.ledger: OffsetLedger[BatchResult] = OffsetLedger()
        self.poison = PoisonRecords()
        self.stalls = StallWatch(stall_after_s, self.metrics)
        flush = StateFlush(state.store, sink, source, self.metrics) if state is not None else None
        self.commits = Committer(
            sink, source, self.ledger, self.metrics, interval_s=commit_interval_s, flush=flush
        )
        self.membership = Membership(
            source,
            self.ledger,
            self.health,
            self.metrics,
            settle=self._settle_for_revocation,
            forget=self._forget,
            exactly_once=exactly_once,
            unstable_after_s=unstable_after_s,
            session_timeout_s=session_timeout_s,
        )
        self._stats = RunStats()
        self._stop = threading.Event()
        self.recovery = Recovery(
            source,
            self.ledger,
            self.poison,
            self.membership,
            self.metrics,
            loop=self,
            stop=self._stop,
            tick=lambda: self._tick(),  # noqa: PLW0108 (late-bound: tests and benchmarks replace _tick)
        )
        self._next_lag = 0.0

    def request_stop(self) -> None:
        """Finish the current batch, then flush, commit and leave the group (signal-safe)."""
        self._stop.set()
        self.sink.interrupt()  # a transaction wedged on the broker gives up within seconds

    # ------------------------------------------------------------------ the loop

    def run(self, *, max_events: int | None = None, timeout: float | None = None) -> RunStats:
        """Run until stopped, ``max_events`` records are handled, or ``timeout`` seconds pass."""
        stats = self._stats = RunStats()
        deadline = None if timeout is None else time.monotonic() + timeout
        self.source.subscribe(self.membership)
        self.watcher.start()
        try:
            while True:
                self.membership.check(self.commits.take_refusal())
                if self._stop.is_set():
                    stats.stopped_by = "signal"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    stats.stopped_by = "timeout"
                    break
                limit = self.max_poll_records
                if max_events is not None:
                    in_flight = sum(r.n_in for r in self.ledger.pending)
                    limit = min(limit, max_events - stats.events_in - in_flight)
                    if limit <= 0:  # everything asked for is read: wait for its acks, then stop
                        with self.membership.waiting():
                            self._settle(stats, block=True, sync=True)
                        if stats.events_in >= max_events:
                            stats.stopped_by = "max_events"
                            break
                        continue
                self._tick()
                model = self.models.current(stats.model_versions)
                if model is None:
                    with self.membership.waiting():  # exactly-once: no transaction left open meanwhile
                        self._settle(stats, block=self.exactly_once)
                    self.models.wait(self.poll_timeout_ms, self.max_poll_records)
                    continue
                before_poll(model, self.state)
                polled = self.source.poll(self.poll_timeout_ms, limit)
                if polled and not self.membership.alive(time.monotonic()):
                    polled = {}  # fetched before this member was frozen and evicted: not its to score
                if polled:
                    self._handle(polled, model, stats)
                with self.membership.waiting():  # for acknowledgements, commits: no freeze
                    # exactly-once and no input: the open transaction commits now, not at the next batch
                    self._settle(stats, block=self.exactly_once and not polled)
                    if not polled and not self.ledger.pending and self.ledger.needs_sync():
                        self.commits.idle()
        except FencedInstanceError as exc:
            self.membership.fenced(exc)
            stats.stopped_by = "fenced"
        finally:
            self._drain(stats)
            self._shutdown()
        log.info(
            "stopped (%s) after %d records, %d anomalies, %d dead letters",
            stats.stopped_by,
            stats.events_in,
            stats.anomalies,
            stats.dead_letters,
        )
        return stats

    def _tick(self) -> None:
        now = time.monotonic()
        self.health.tick()
        self.metrics.last_tick.set(time.time())
        self.membership.alive(now)
        assigned = self.source.assignment()
        self.poison.forget(self.ledger.retain(assigned, now))
        if self.state is not None:
            self.state.keep_only(assigned)
        self.health.assigned = len(assigned)
        self.metrics.assigned_partitions.set(len(assigned))
        self.membership.update(now, self.commits.failures_in_row)
        if now >= self._next_lag:
            self._next_lag = now + LAG_REFRESH_S
            lag = self.source.lag()
            for (topic, partition), behind in lag.items():
                self.metrics.lag.labels(topic, str(partition)).set(behind)
            busy = {tp for tp, behind in lag.items() if behind > 0} | self.ledger.uncommitted()
            stalled = self.stalls.update(now, assigned, busy, self.ledger.last_committed)
            self.health.stalled = [f"{t}[{p}]" for t, p in stalled]

    def _handle(self, polled: dict[TopicPart, list[Any]], model: ServedModel, stats: RunStats) -> None:
        started = time.perf_counter()
        records = [r for recs in polled.values() for r in recs]
        first = {tp: start_offset(recs[0]) for tp, recs in polled.items()}
        after = {tp: recs[-1].offset + 1 for tp, recs in polled.items()}
        try:
            result = self._decide(records, first, model, after)
        except (KafkaUnavailableError, MongoUnavailableError) as exc:  # the state's restore or seed lookup
            self.recovery.undecided(first, exc, stats, settle=lambda: self._settle(stats, block=True))
            return
        scored_at = time.perf_counter()
        result.outputs, parked = self.poison.apply(result.outputs)
        for record in parked:  # logged by apply
            stats.parked += 1
            self.metrics.parked.labels(record.kind).inc()
        try:
            if self.audit is not None and result.anomalies:
                self.audit.write(result.anomalies, ", ".join(f"{t}[{p}]@{o}" for (t, p), o in first.items()))
            delivery = self.sink.publish(result.outputs, after, self.source)
        except StaleMemberError as exc:  # exactly-once: the transaction's offsets were refused
            self.membership.rejoin(exc)
            return
        except DeliveryError as exc:
            if isinstance(exc, FencedInstanceError):
                raise
            self.recovery.publish_failed(result, first, exc, stats)
            return
        if self.state is not None:
            self.state.published(result)
        self.ledger.record(first, after, delivery, result)
        self.metrics.batch_size.observe(len(records))
        self.metrics.score_seconds.observe(scored_at - started)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _decide(
        self, records: list[Any], first: dict[TopicPart, int], model: ServedModel, after: dict[TopicPart, int]
    ) -> BatchResult:
        """The seed path, or the change path with the per-item state (by the model's type)."""
        return decide(records, first, model, config=self.config, state=self.state,
                      committed=self.source.committed, tick=self._tick, after=after)  # fmt: skip

    def _settle(self, stats: RunStats, *, block: bool, sync: bool = False) -> None:
        """Count and commit, in order, the batches whose outputs are all acknowledged.

        A failed delivery rewinds to the oldest unsettled offset of every partition.
        """
        settled = self.ledger.settle(block=block, max_pending=MAX_IN_FLIGHT)
        self._count(settled.acked, stats)
        if settled.acked:
            self.recovery.acknowledged()
            self.poison.settled(self.ledger.committable())
        if settled.error is None:
            self.commits.after_settle(bool(settled.acked), sync=sync)
            return
        if settled.acked:
            self.commits.commit(self.ledger.committable(), sync=True)
        self.recovery.settle_failed(settled, settled.error, stats)

    def _settle_for_revocation(self) -> bool:
        """Partitions are being revoked (inside a poll): settle and count the batches in flight, and
        write the state's cached changelog records. False: they were not acknowledged (commit nothing).

        No commit and no pause here (the source commits what the ledger then offers); a failed
        delivery rewinds the partitions that stay, at once.
        """
        settled = self.ledger.settle(block=True, max_pending=0)
        self._count(settled.acked, self._stats)
        if settled.error is not None:
            self.recovery.rewind(settled.rewind, settled.error, self._stats, at_once=True)
        return self.commits.flush_now()

    def _forget(self, partitions: Sequence[TopicPart]) -> None:
        # a revocation settled (so committed) its batches first; lost partitions or a re-join abort them
        if self.sink.discard() and self.state is not None:
            self.state.rewound(to_committed=partitions)  # their state changes never happened
        self.ledger.forget(partitions)
        self.poison.forget(list(partitions))

    def _count(self, acked: list[BatchResult], stats: RunStats) -> None:
        """Acknowledged batches count: in the state, the metrics and the run's stats."""
        for result in acked:
            if self.state is not None:
                self.state.acknowledged(result)
            self.metrics.count_batch(result, decisions=bool(self.config.decisions_topic))
            stats.add(result)

    def _drain(self, stats: RunStats) -> None:
        """At shutdown: wait for every acknowledgement and commit synchronously."""
        if stats.stopped_by == "fenced":
            stats.final_commit = False
            return
        if self.recovery.last_transaction_failed(stats):
            return
        try:
            self._settle(stats, block=True, sync=True)  # exactly-once: commits the open transaction
            if self.recovery.last_transaction_failed(stats):
                return
            stats.final_commit = self.commits.final()
        except Exception as exc:  # uncommitted batches are redelivered after a restart
            stats.final_commit = False
            log.error("final flush/commit failed (%r); the last batches will be redelivered", exc)

    def _shutdown(self) -> None:
        self.health.stopping = True
        self.watcher.stop()
        for name, close in (("producer", self.sink.close), ("consumer", self.source.close)):
            try:
                close()
            except Exception as exc:  # report and keep closing the rest
                log.error("closing the %s failed: %r", name, exc)
        if self.audit is not None:
            self.audit.close()
        if self.state is not None:
            self.state.store.close()
            if self.state.episodes is not None:
                self.state.episodes.stop()
