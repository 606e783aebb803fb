"""Prometheus metrics of `stockwatch consume`, on their own registry (never the global one).

Names follow the Prometheus conventions: the unit in the name (``_records``, ``_seconds``),
``_total`` on counters, label values from small fixed sets (docs/consume.md has the table of names
and the old names they replace).
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from consumer.scoring.failure_kinds import DELIVERY_FAILURE_KINDS, delivery_failure_kind
from consumer.wire.dlq import DlqReason

if TYPE_CHECKING:
    from consumer.scoring.batch import BatchResult
    from consumer.scoring.state.changes import Restore

__all__ = ["ConsumerMetrics"]

_BATCH_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ConsumerMetrics:
    """All metrics of the scoring service; ``registry`` is what ``/metrics`` serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events_in = Counter("stockwatch_events_in_total", "Input records consumed.", registry=r)
        self.events_scored = Counter("stockwatch_events_scored_total", "Valid items scored.", registry=r)
        self.anomalies_out = Counter(
            "stockwatch_anomalies_total",
            "Anomaly events published, by severity and model version.",
            ["severity", "model_version"],
            registry=r,
        )
        self.decisions_out = Counter(
            "stockwatch_decisions_published_total", "Decision events published (decisions_topic).", registry=r
        )
        self.dlq = Counter(
            "stockwatch_dlq_total", "Records sent to the dead-letter topic.", ["reason"], registry=r
        )
        self.batch_size = Histogram(
            "stockwatch_batch_records",
            "Records per processed batch.",
            buckets=_BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "stockwatch_batch_duration_seconds",
            "Wall time to validate, score, publish and commit one batch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.score_seconds = Histogram(
            "stockwatch_score_duration_seconds",
            "Wall time of the vectorised scoring call.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commits = Counter(
            "stockwatch_commits_total", "Batches committed (offsets or transactions).", registry=r
        )
        self.delivery_failures = Counter(
            "stockwatch_delivery_failures_total",
            "Batches whose outputs or commit failed (retried / aborted), by kind of failure.",
            ["kind"],
            registry=r,
        )
        self.state_restore_seconds = Histogram(
            "stockwatch_state_restore_seconds",
            "Wall time to restore one partition's item states from the changelog.",
            buckets=(0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
            registry=r,
        )
        self.state_partitions = Gauge(
            "stockwatch_state_partitions", "Partitions whose item states this member holds.", registry=r
        )
        self.state_flushed = Counter(
            "stockwatch_state_changelog_records_total",
            "Item states written to the changelog at offset commits (at-least-once: one per item "
            "changed since the last commit).",
            registry=r,
        )
        self.state_fresh_starts = Counter(
            "stockwatch_state_fresh_starts_total",
            "Partitions whose item states started afresh from the inventory seed (the seed model "
            "decided some of their updates, or the model groups peers by another field).",
            registry=r,
        )
        self.state_dropped = Counter(
            "stockwatch_state_restore_dropped_total",
            "Item states a restore dropped as ones StockWatch never writes (non-finite or out-of-range "
            "numbers: a damaged or forged changelog record); their items start from the inventory seed.",
            registry=r,
        )
        self.model = _ModelInfo()  # no sample at all until a model is served (not a label-less 1)
        r.register(self.model)
        self.model_loaded = Gauge("stockwatch_model_loaded", "1 when a model is loaded, else 0.", registry=r)
        self.model_clock = _ModelClock()  # no sample at all while no model (with a training time) serves
        r.register(self.model_clock)
        self.model_swaps = Counter(
            "stockwatch_model_swaps_total", "Models handed over to the loop.", registry=r
        )
        self.model_refusals = Counter(
            "stockwatch_model_refusals_total",
            "Models refused (verification or load failure).",
            ["reason"],
            registry=r,
        )
        self.waiting_for_model = Gauge(
            "stockwatch_waiting_for_model", "1 while partitions are paused for lack of a model.", registry=r
        )
        self.lag = Gauge(
            "stockwatch_consumer_lag_records",
            "Records behind the partition end.",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "stockwatch_assigned_partitions", "Input partitions assigned to this instance.", registry=r
        )
        self.last_tick = Gauge(
            "stockwatch_loop_last_tick_timestamp_seconds", "Last time the poll loop ran.", registry=r
        )
        self.audit_writes = Counter(
            "stockwatch_audit_writes_total", "Anomalies written to Mongo.", registry=r
        )
        self.audit_failures = Counter(
            "stockwatch_audit_failures_total", "Failed audit writes (Mongo down or refusing).", registry=r
        )
        self.audit_skipped = Counter(
            "stockwatch_audit_skipped_total",
            "Anomalies published without an audit write (Mongo failing for too long).",
            registry=r,
        )
        self.parked = Counter(
            "stockwatch_parked_records_total",
            "Input records whose outputs the broker refused even reduced: logged, offset committed past.",
            ["reason"],
            registry=r,
        )
        self.partition_stalled = Gauge(
            "stockwatch_partition_stalled",
            "1 while an assigned partition with work pending has not committed for stall_after_s.",
            ["topic", "partition"],
            registry=r,
        )
        self.suppressed = Counter(
            "stockwatch_suppressed",  # exposed as stockwatch_suppressed_total
            "Alert episodes opened silently: an active suppression matched (alert_mode episodes).",
            registry=r,
        )
        self.suppressions_active = Gauge(
            "stockwatch_suppressions_active", "Active suppressions the consumer last loaded.", registry=r
        )
        self.suppressions_stale = Gauge(
            "stockwatch_suppressions_stale",
            "1 while the suppressions cannot be read (the last known set stays in force).",
            registry=r,
        )
        self.group_rejoins = Counter(
            "stockwatch_group_rejoins_total",
            "Times this member's commits were refused as stale: it dropped its work in flight and re-joined.",
            registry=r,
        )
        self.group_stable = Gauge(
            "stockwatch_group_stable", "1 while the client is in a stable consumer group, else 0.", registry=r
        )
        for kind in DELIVERY_FAILURE_KINDS:  # every series exists from the start: rate() sees the first one
            self.delivery_failures.labels(kind)
        for reason in DlqReason:
            self.dlq.labels(reason.value)

    def suppressions_loaded(self, active: int, stale: bool) -> None:
        self.suppressions_active.set(active)
        self.suppressions_stale.set(int(stale))

    def state_changed(self, owned: int, restore: Restore | None) -> None:
        """The per-item state holds ``owned`` partitions now; ``restore``: one was just restored."""
        self.state_partitions.set(owned)
        if restore is not None:
            self.state_restore_seconds.observe(restore.seconds)
            if restore.reset:
                self.state_fresh_starts.inc()
            if restore.dropped:
                self.state_dropped.inc(restore.dropped)

    def set_model_created(self, created_at: float | None) -> None:
        """The serving model's training time (epoch seconds); None when unknown."""
        self.model_clock.created_at = created_at

    def count_delivery_failure(self, exc: BaseException) -> None:
        """A batch was not delivered; labelled by kind (timeout, too_large, ...), never a class name."""
        self.delivery_failures.labels(delivery_failure_kind(exc)).inc()

    def count_batch(self, result: BatchResult, *, decisions: bool) -> None:
        """Count a batch whose outputs were all delivered (``decisions``: decision events too)."""
        self.events_in.inc(result.n_in)
        self.events_scored.inc(result.n_valid)
        if result.n_anomalies:
            severities = Tally(str(a.get("severity", "unknown")) for a in result.anomalies)
            for severity, count in severities.items():
                self.anomalies_out.labels(severity, result.model_version).inc(count)
        if decisions:
            self.decisions_out.inc(result.n_valid)
        if result.suppressed:
            self.suppressed.inc(result.suppressed)
        for reason, count in result.dlq_reasons.items():
            self.dlq.labels(reason).inc(count)

    def render(self) -> bytes:
        """The text exposition format of the registry."""
        return generate_latest(self.registry)


class _ModelInfo(Collector):
    """``stockwatch_model_info{version}``: absent until the first model is served, then one series."""

    _NAME, _HELP = "stockwatch_model", "The model version serving."

    def __init__(self) -> None:
        self.version: str | None = None

    def info(self, labels: dict[str, str]) -> None:
        """Same call as prometheus_client's Info; only ``version`` is kept."""
        self.version = labels["version"]

    def describe(self) -> list[Metric]:
        return [InfoMetricFamily(self._NAME, self._HELP)]

    def collect(self) -> Iterator[Metric]:
        if self.version is None:
            return
        yield InfoMetricFamily(self._NAME, self._HELP, value={"version": self.version})


class _ModelClock(Collector):
    """``stockwatch_model_created_timestamp_seconds`` and ``stockwatch_model_age_seconds``, computed
    at scrape time, and absent (not 0, which reads as a brand-new model) while none is known."""

    def __init__(self) -> None:
        self.created_at: float | None = None

    def describe(self) -> list[Metric]:
        return [
            GaugeMetricFamily(
                "stockwatch_model_created_timestamp_seconds", "Training time of the serving model."
            ),
            GaugeMetricFamily("stockwatch_model_age_seconds", "Age of the serving model (now - created_at)."),
        ]

    def collect(self) -> Iterator[Metric]:
        created = self.created_at
        if created is None:
            return
        yield GaugeMetricFamily(
            "stockwatch_model_created_timestamp_seconds", "Training time of the serving model.", value=created
        )
        yield GaugeMetricFamily(
            "stockwatch_model_age_seconds",
            "Age of the serving model (now - created_at).",
            value=max(0.0, time.time() - created),
        )
