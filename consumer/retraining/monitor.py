"""What the retrain worker reports about itself: its probes (:class:`WorkerHealth`) and metrics.

* ``/healthz`` — 200 while the control loop has ticked within ``stale_s``.
* ``/readyz`` — 200 when all hold: this worker holds a control-topic partition (a second worker
  on a one-partition control topic is a standby: it still runs scheduled retrains, but is not
  ready); Mongo answered within ``mongo_fresh_s`` and its last check succeeded; fewer than
  ``max_failures`` retrains failed in a row.

The worker's loop and retrain thread write through :class:`WorkerMonitor`; the HTTP threads only
read :class:`WorkerHealth` (plain attribute stores, atomic under the GIL).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from consumer.retraining.metrics import COMMAND_LABELS, WorkerMetrics
from consumer.wire.control import Ack

__all__ = ["MAX_FAILURES", "MONGO_FRESH_S", "WorkerHealth", "WorkerMonitor"]

MAX_FAILURES = 3  # one failure is an outage blip (the run already retried); three in a row is not
MONGO_FRESH_S = 120.0  # the loop reads the lease at least every 30 s: four missed reads


@dataclass
class WorkerHealth:
    """What the worker's loop reports, read by ``/healthz`` and ``/readyz``."""

    stale_s: float = 30.0
    mongo_fresh_s: float = MONGO_FRESH_S
    max_failures: int = MAX_FAILURES
    last_tick: float = field(default_factory=time.monotonic)
    control_partitions: int = 0
    mongo_ok_at: float | None = None
    mongo_error: str | None = None
    consecutive_failures: int = 0

    def healthz(self) -> tuple[bool, dict[str, Any]]:
        """(ok, body) for ``/healthz``."""
        age = time.monotonic() - self.last_tick
        return age <= self.stale_s, {"loop_tick_age_s": round(age, 3), "stale_after_s": self.stale_s}

    def readyz(self) -> tuple[bool, dict[str, Any]]:
        """(ok, body) for ``/readyz``: what is missing, if anything."""
        missing = []
        if self.control_partitions == 0:
            missing.append("no control partition assigned")
        if self.mongo_error is not None:
            missing.append(f"Mongo unavailable: {self.mongo_error}")
        elif self.mongo_ok_at is None:
            missing.append("Mongo not checked yet")
        elif time.monotonic() - self.mongo_ok_at > self.mongo_fresh_s:
            missing.append(f"Mongo not reached for over {self.mongo_fresh_s:g}s")
        if self.consecutive_failures >= self.max_failures:
            missing.append(f"the last {self.consecutive_failures} retrains failed")
        body = {
            "control_partitions": self.control_partitions,
            "consecutive_failures": self.consecutive_failures,
            "missing": missing,
        }
        return not missing, body


class WorkerMonitor:
    """The one place the worker reports to; keeps the probes' state and the metrics in step."""

    def __init__(self, metrics: WorkerMetrics | None = None, health: WorkerHealth | None = None) -> None:
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self.health = health if health is not None else WorkerHealth()

    def tick(self, control_partitions: int) -> None:
        """The control loop ran; it holds ``control_partitions`` partitions."""
        self.health.last_tick = time.monotonic()
        self.health.control_partitions = control_partitions
        self.metrics.last_tick.set(time.time())
        self.metrics.control_partitions.set(control_partitions)

    def mongo_ok(self) -> None:
        """Mongo just answered."""
        self.health.mongo_ok_at, self.health.mongo_error = time.monotonic(), None

    def unavailable(self, dependency: str, exc: BaseException) -> None:
        """An operation failed because ``dependency`` (``mongo`` or ``kafka``) was unavailable."""
        self.metrics.dependency_errors.labels(dependency).inc()
        if dependency == "mongo":
            self.health.mongo_error = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__

    def retrain_started(self) -> None:
        """This worker took the lease and started a run."""
        self.metrics.lease_held.set(1)

    def retrain_finished(self, status: str, duration_s: float) -> None:
        """A run ended with ``status`` (promoted, rejected, insufficient_data or failed)."""
        self.metrics.lease_held.set(0)
        decided = status in ("promoted", "rejected", "insufficient_data")
        self.metrics.retrains.labels(status if decided else "failed").inc()
        self.metrics.retrain_duration.observe(duration_s)
        if not decided:
            self.health.consecutive_failures += 1
        else:
            self.health.consecutive_failures = 0
            self.metrics.last_success.set(time.time())
        self.metrics.consecutive_failures.set(self.health.consecutive_failures)

    def ack(self, status: Ack, command: str | None, command_id: str | None) -> None:
        """An acknowledgement is being published (or, with no command id, would be)."""
        if status is Ack.COALESCED and command == "retrain":
            self.metrics.retrains.labels("coalesced").inc()
        if command_id is not None or status is Ack.REJECTED:
            label = command if command in COMMAND_LABELS else "unknown"
            self.metrics.commands.labels(label, status.value).inc()

    def publish_failed(self) -> None:
        """A status message could not be published (the broker is unavailable)."""
        self.metrics.status_publish_failures.inc()
        self.metrics.dependency_errors.labels("kafka").inc()
