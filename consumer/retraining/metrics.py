"""Prometheus metrics of `stockwatch retrain-worker`, on their own registry (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from consumer.wire.control import Ack, CommandName

__all__ = ["COMMAND_LABELS", "DEPENDENCIES", "RETRAIN_STATUSES", "WorkerMetrics"]

RETRAIN_STATUSES = ("promoted", "rejected", "insufficient_data", "failed", "coalesced")
COMMAND_LABELS = (*(c.value for c in CommandName), "unknown")  # label values never come from a message
DEPENDENCIES = ("mongo", "kafka")
_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class WorkerMetrics:
    """All metrics of the retrain worker; ``registry`` is what its ``/metrics`` serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.retrains = Counter(
            "stockwatch_worker_retrains_total",
            "Retrains by outcome (coalesced: a request folded into a running or recent one).",
            ["status"],
            registry=r,
        )
        self.retrain_duration = Histogram(
            "stockwatch_worker_retrain_duration_seconds",
            "Wall time of one retrain run, snapshot to decision.",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "stockwatch_worker_last_successful_retrain_timestamp_seconds",
            "End of the last retrain of this process that reached a decision (not failed).",
            registry=r,
        )
        self.consecutive_failures = Gauge(
            "stockwatch_worker_retrain_consecutive_failures",
            "Failed retrains in a row (0 after any retrain that reached a decision).",
            registry=r,
        )
        self.commands = Counter(
            "stockwatch_worker_commands_total",
            "Command acknowledgements published, by command and ack status.",
            ["command", "ack"],
            registry=r,
        )
        self.status_publish_failures = Counter(
            "stockwatch_worker_status_publish_failures_total",
            "Status messages (acks, announcements) that could not be published.",
            registry=r,
        )
        self.lease_held = Gauge(
            "stockwatch_worker_lease_held", "1 while this worker holds the retrain lease.", registry=r
        )
        self.dependency_errors = Counter(
            "stockwatch_worker_dependency_errors_total",
            "Operations that failed because Mongo or Kafka was unavailable.",
            ["dependency"],
            registry=r,
        )
        self.control_partitions = Gauge(
            "stockwatch_worker_control_partitions",
            "Control-topic partitions assigned to this worker.",
            registry=r,
        )
        self.retrain_interval = Gauge(
            "stockwatch_worker_retrain_interval_seconds",
            "The configured schedule (retrain_interval_s), for alerts on the model's age.",
            registry=r,
        )
        self.last_tick = Gauge(
            "stockwatch_worker_loop_last_tick_timestamp_seconds",
            "Last time the control loop ran.",
            registry=r,
        )
        for status in RETRAIN_STATUSES:  # every series exists from the start: rate() sees the first one
            self.retrains.labels(status)
        for dependency in DEPENDENCIES:
            self.dependency_errors.labels(dependency)
        for ack in Ack:
            self.commands.labels("retrain", ack.value)

    def render(self) -> bytes:
        """The text exposition format of the registry."""
        return generate_latest(self.registry)
