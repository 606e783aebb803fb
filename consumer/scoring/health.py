"""The HTTP side of `stockwatch consume`: ``/metrics``, ``/healthz`` and ``/readyz``.

* ``/healthz`` — 200 while the poll loop has ticked within ``stale_s`` (the process is alive
  *and* making progress), else 503.
* ``/readyz`` — 200 when partitions are assigned and a model is loaded, else 503 with what is
  missing (for example ``waiting for a model``).
* ``/metrics`` — the Prometheus text format of the service's own registry.

The loop writes :class:`HealthState` (plain attribute stores, atomic under the GIL); the server
thread (:class:`consumer.observability.ProbeServer`) only reads it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from consumer.observability import ProbeServer
from consumer.scoring.metrics import ConsumerMetrics

__all__ = ["HealthServer", "HealthState"]


@dataclass
class HealthState:
    """What the loop reports about itself."""

    stale_s: float = 30.0
    last_tick: float = field(default_factory=time.monotonic)
    assigned: int = 0
    model_version: str | None = None
    waiting_for_model: bool = False
    stopping: bool = False

    def tick(self) -> None:
        """The loop is alive."""
        self.last_tick = time.monotonic()

    def healthz(self) -> tuple[bool, dict[str, Any]]:
        """(ok, body) for ``/healthz``."""
        age = time.monotonic() - self.last_tick
        return age <= self.stale_s, {"loop_tick_age_s": round(age, 3), "stale_after_s": self.stale_s}

    def readyz(self) -> tuple[bool, dict[str, Any]]:
        """(ok, body) for ``/readyz``."""
        missing = []
        if self.assigned == 0:
            missing.append("no partitions assigned")
        if self.model_version is None:
            missing.append("waiting for a model")
        if self.stopping:
            missing.append("shutting down")
        body = {"assigned_partitions": self.assigned, "model_version": self.model_version, "missing": missing}
        return not missing, body


class HealthServer(ProbeServer):
    """The consumer's server: its registry on ``/metrics``, :class:`HealthState` on the probes."""

    def __init__(self, state: HealthState, metrics: ConsumerMetrics, *, host: str, port: int) -> None:
        self.state = state
        self.metrics = metrics
        super().__init__(
            render_metrics=metrics.render,
            probes={"/healthz": state.healthz, "/readyz": state.readyz},
            host=host,
            port=port,
        )
