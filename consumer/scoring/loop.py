"""The scoring loop of `stockwatch consume`: poll, validate, score, publish, commit.

One iteration handles one poll batch (at most ``max_poll_records``):

1. between batches, take a newly loaded model from the :class:`ModelWatcher` (so every event of
   a batch is scored by one version);
2. without a model: pause every assigned partition, rewind anything already polled, and wait
   (logged once, ``stockwatch_waiting_for_model`` = 1, ``/readyz`` says so) — nothing is
   committed, nothing is dropped;
3. with a model: :func:`consumer.scoring.batch.process_batch` (pure), the optional Mongo audit, then the
   sink publishes the outputs and commits the offsets (see :mod:`consumer.adapters.kafka` for the two
   delivery modes). If delivery fails the partitions are rewound and the batch is retried.

Nothing slow happens in the loop itself: models are loaded by the watcher thread, so
``max.poll.interval.ms`` is never at risk. :meth:`ScoringService.request_stop` (SIGTERM/SIGINT)
lets the current batch finish, then the sink flushes and the consumer leaves the group.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from consumer.ports import Audit, DeliveryError, Sink, Source, TopicPart
from consumer.scoring.batch import UNVERSIONED, BatchConfig, BatchResult, ScoringModel, process_batch
from consumer.scoring.health import HealthState
from consumer.scoring.ledger import OffsetLedger
from consumer.scoring.metrics import ConsumerMetrics
from consumer.scoring.model_watcher import ModelWatcher

__all__ = ["Audit", "DeliveryError", "RunStats", "ScoringService", "Sink", "Source"]

log = logging.getLogger(__name__)

LAG_REFRESH_S = 1.0
FINAL_COMMIT_WAIT_S = 15.0  # shutdown waits this long for a rebalance to let the last commit through
LOST_PARTITIONS_AFTER_S = 1.0  # settled partitions still not assigned after this long went elsewhere
MAX_IN_FLIGHT = 2  # batches whose outputs may still await acknowledgement while the next is scored


@dataclass
class RunStats:
    """What one :meth:`ScoringService.run` did."""

    events_in: int = 0
    scored: int = 0
    anomalies: int = 0
    dead_letters: int = 0
    batches: int = 0
    delivery_failures: int = 0
    model_versions: list[str] = field(default_factory=list)
    stopped_by: str = ""

    def add(self, result: BatchResult) -> None:
        """Count a settled batch."""
        self.batches += 1
        self.events_in += result.n_in
        self.scored += result.n_valid
        self.anomalies += result.n_anomalies
        self.dead_letters += result.n_in - result.n_valid


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
    ) -> None:
        self.source = source
        self.sink = sink
        self.watcher = watcher
        self.config = config
        self.metrics = metrics if metrics is not None else ConsumerMetrics()
        self.health = health if health is not None else HealthState()
        self.audit = audit
        self.poll_timeout_ms = poll_timeout_ms
        self.max_poll_records = max_poll_records
        self.retry_backoff_s = retry_backoff_s
        self.commit_interval_s = commit_interval_s
        self.exactly_once = exactly_once
        self.model: ScoringModel | None = None
        self._stop = threading.Event()
        self._paused = False
        self._announced_wait = False
        self._next_lag = 0.0
        self.ledger: OffsetLedger[BatchResult] = OffsetLedger()
        self._commit_failed = False
        self._next_commit = 0.0

    def request_stop(self) -> None:
        """Finish the current batch, then flush, commit and leave the group (signal-safe)."""
        self._stop.set()

    # ------------------------------------------------------------------ the loop

    def run(self, *, max_events: int | None = None, timeout: float | None = None) -> RunStats:
        """Run until stopped, ``max_events`` records are handled, or ``timeout`` seconds pass."""
        stats = RunStats()
        deadline = None if timeout is None else time.monotonic() + timeout
        self.source.subscribe()
        self.watcher.start()
        try:
            while True:
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
                        self._settle(stats, block=True, sync=True)
                        if stats.events_in >= max_events:
                            stats.stopped_by = "max_events"
                            break
                        continue
                self._tick()
                self._maybe_swap(stats)
                if self.model is None:
                    self._wait_for_model()
                    continue
                polled = self.source.poll(self.poll_timeout_ms, limit)
                if polled:
                    self._handle(polled, self.model, stats)
                self._settle(stats, block=False)
                if not polled and not self.ledger.pending and self.ledger.needs_sync():
                    self._commit_idle()
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
        assigned = self.source.assignment()
        self.ledger.retain(assigned, now)
        self.health.assigned = len(assigned)
        self.metrics.assigned_partitions.set(len(assigned))
        if now >= self._next_lag:
            self._next_lag = now + LAG_REFRESH_S
            for (topic, partition), lag in self.source.lag().items():
                self.metrics.lag.labels(topic, str(partition)).set(lag)

    def _maybe_swap(self, stats: RunStats) -> None:
        model = self.watcher.take()
        if model is None:
            return
        old = self.model.version if self.model is not None else None
        self.model = model
        version = model.version or UNVERSIONED
        stats.model_versions.append(version)
        self.health.model_version = version
        self.metrics.model.info({"version": version})
        self.metrics.model_loaded.set(1)
        self.metrics.model_swaps.inc()
        created = getattr(getattr(model, "metadata", None), "created_at", None)
        self.metrics.set_model_created(created.timestamp() if isinstance(created, datetime) else None)
        if self._paused:
            self.source.resume_all()
            self._paused = False
            self.health.waiting_for_model = False
            self.metrics.waiting_for_model.set(0)
            log.info("model %s loaded: resuming consumption", version)
        else:
            log.info("model swapped %s -> %s between batches", old, version)

    def _wait_for_model(self) -> None:
        """Keep the group membership alive without consuming; rewind anything polled."""
        if not self._paused:
            self.health.waiting_for_model = True
            self.metrics.waiting_for_model.set(1)
            self._paused = True
            self._announced_wait = False
        if not self._announced_wait and self.watcher.first_check_done.is_set():
            self._announced_wait = True  # logged once, after the watcher has looked at the store
            log.warning("no usable model yet: partitions paused, nothing is consumed until one is published")
        self.source.pause_all()  # every iteration: partitions assigned by a rebalance too
        polled = self.source.poll(self.poll_timeout_ms, self.max_poll_records)
        if polled:
            self.source.seek({tp: recs[0].offset for tp, recs in polled.items()})

    def _handle(self, polled: dict[TopicPart, list[Any]], model: ScoringModel, stats: RunStats) -> None:
        started = time.perf_counter()
        records = [r for recs in polled.values() for r in recs]
        first = {tp: recs[0].offset for tp, recs in polled.items()}
        after = {tp: recs[-1].offset + 1 for tp, recs in polled.items()}
        result = process_batch(records, model, self.config, now=datetime.now(UTC))
        scored_at = time.perf_counter()
        try:
            if self.audit is not None and result.anomalies:
                self.audit.write(result.anomalies)
                self.metrics.audit_writes.inc(len(result.anomalies))
            delivery = self.sink.publish(result.outputs, after, self.source)
        except DeliveryError as exc:
            self._rewind(self.ledger.rewind_targets(first), exc, stats, from_committed=self.exactly_once)
            return
        self.ledger.record(first, after, delivery, result)
        self.metrics.batch_size.observe(len(records))
        self.metrics.score_seconds.observe(scored_at - started)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _settle(self, stats: RunStats, *, block: bool, sync: bool = False) -> None:
        """Commit, in order, the batches whose outputs are all acknowledged (see OffsetLedger.settle).

        A failed delivery rewinds to the oldest unsettled offset of every partition.
        """
        settled = self.ledger.settle(block=block, max_pending=MAX_IN_FLIGHT)
        for result in settled.acked:
            self.metrics.count_batch(result, decisions=bool(self.config.decisions_topic))
            stats.add(result)
        if settled.error is not None:
            if settled.acked:
                self._commit(self.ledger.committable(), sync=True)
            self._rewind(settled.rewind, settled.error, stats, from_committed=False)
        elif settled.acked and (sync or time.monotonic() >= self._next_commit):
            # Every acknowledged offset so far, at most every commit_interval_s: fewer commit
            # round trips; a crash redelivers at most that much more.
            self._next_commit = time.monotonic() + self.commit_interval_s
            self._commit(self.ledger.committable(), sync=sync)
        elif self._commit_failed and self.ledger.committable() and not self.ledger.pending:
            self._commit(self.ledger.committable(), sync=False)  # a refused commit (rebalance): try again

    def _commit_idle(self) -> None:
        """Idle: make sure the acknowledged offsets are committed, synchronously.

        Async commits are fire-and-forget (a failure only reaches a log line, and offsets of a
        partition revoked at that moment are skipped); with no more input, no later commit would
        cover them, so the stream's tail would stay uncommitted until shutdown.
        """
        self._commit(self.ledger.committable(), sync=True)

    def _commit(self, offsets: dict[TopicPart, int], *, sync: bool) -> bool:
        """Commit acknowledged offsets; a refusal is remembered and retried, never fatal."""
        try:
            self.sink.commit(offsets, self.source, sync=sync)
        except DeliveryError as exc:
            if not self._commit_failed:
                log.warning("offset commit refused (%r); retrying after the next poll", exc)
            self._commit_failed = True
            return False
        self._commit_failed = False
        self.ledger.committed(offsets, sync=sync)
        self.metrics.commits.inc()
        return True

    def _drain(self, stats: RunStats) -> None:
        """At shutdown: wait for every acknowledgement and commit synchronously."""
        try:
            self._settle(stats, block=True, sync=True)
            # Async commits may still be in flight or have been refused: finish with a synchronous
            # one. During a rebalance the partitions are not assigned (a commit would skip them
            # silently) or the broker refuses the commit: polls complete the rebalance (nothing
            # fetched is used), for at most FINAL_COMMIT_WAIT_S.
            started = time.monotonic()
            while settled := self.ledger.committable():
                mine = self.ledger.committable(self.source.assignment())
                waited = time.monotonic() - started
                # All of them ours: commit. Some ours for a while: the others went to another member
                # in a rebalance (it resumes from their committed offsets); commit ours.
                if (len(mine) == len(settled) or (mine and waited >= LOST_PARTITIONS_AFTER_S)) and (
                    self._commit(mine, sync=True)
                ):
                    if len(mine) < len(settled):
                        lost = sorted(set(settled) - set(mine))
                        log.info("partitions %s are no longer ours; their new owner resumes them", lost)
                    break
                if waited >= FINAL_COMMIT_WAIT_S:
                    log.warning("final commit not possible (partitions not ours); they will be redelivered")
                    break
                self.source.pause_all()
                self.source.poll(self.poll_timeout_ms or 100, 1)
        except Exception as exc:  # uncommitted batches are redelivered after a restart
            log.error("final flush/commit failed (%r); the last batches will be redelivered", exc)

    def _rewind(
        self, first: dict[TopicPart, int], exc: BaseException, stats: RunStats, *, from_committed: bool
    ) -> None:
        """Delivery failed: nothing of the batch counts; seek back and retry after a pause."""
        stats.delivery_failures += 1
        self.metrics.count_delivery_failure(exc)
        target = dict(first)
        if from_committed:  # the transaction was aborted: go back to what the group committed
            try:
                for tp, offset in self.source.committed(list(first)).items():
                    if offset is not None:
                        target[tp] = offset
            except Exception as committed_exc:  # the batch start is the committed offset anyway
                log.warning(
                    "could not read committed offsets (%r); rewinding to the batch start", committed_exc
                )
        log.warning(
            "batch not delivered (%r); rewinding %s and retrying in %.1fs",
            exc,
            ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(target.items())),
            self.retry_backoff_s,
        )
        self.source.seek(target)
        self._stop.wait(self.retry_backoff_s)

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
