"""The HTTP side of `stockwatch consume`: ``/metrics``, ``/healthz`` and ``/readyz``.

* ``/healthz`` — 200 while the poll loop has ticked within ``stale_s`` (the process is alive
  *and* making progress), else 503.
* ``/readyz`` — 200 when partitions are assigned, a model is loaded, no partition is stalled
  (work pending — lag, or records polled — and no commit for ``stall_after_s``; see
  :class:`StallWatch`) and the member is in a stable group whose commits go through (see
  :mod:`consumer.scoring.membership`), else 503 with what is missing (e.g. ``waiting for a model``).
* ``/metrics`` — the Prometheus text format of the service's own registry.

The loop writes :class:`HealthState` (plain attribute stores, atomic under the GIL); the server
thread (:class:`consumer.observability.ProbeServer`) only reads it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from consumer.observability import ProbeServer
from consumer.ports import TopicPart
from consumer.scoring.metrics import ConsumerMetrics

__all__ = ["HealthServer", "HealthState", "StallWatch"]


@dataclass
class HealthState:
    """What the loop reports about itself."""

    stale_s: float = 30.0
    last_tick: float = field(default_factory=time.monotonic)
    assigned: int = 0
    model_version: str | None = None
    waiting_for_model: bool = False
    stopping: bool = False
    stalled: list[str] = field(default_factory=list)  # "topic[partition]" (see StallWatch)
    group_problems: list[str] = field(default_factory=list)  # see consumer.scoring.membership

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
        if self.stalled:
            missing.append("partitions stalled (no commit with work pending): " + ", ".join(self.stalled))
        missing.extend(self.group_problems)
        body = {"assigned_partitions": self.assigned, "model_version": self.model_version, "missing": missing}
        return not missing, body


class StallWatch:
    """Assigned partitions with work pending whose committed offset has not moved for ``after_s``.

    Work pending: lag (records behind the partition end) or records polled and not committed.
    A partition with nothing to do, newly assigned, or whose commit moved starts a new period.
    """

    def __init__(self, after_s: float, metrics: ConsumerMetrics) -> None:
        self.after_s = after_s
        self.metrics = metrics
        self._since: dict[TopicPart, tuple[float, int | None]] = {}  # start of the period, commit then

    def update(
        self, now: float, assigned: Set[TopicPart], busy: Set[TopicPart], committed: Mapping[TopicPart, int]
    ) -> list[TopicPart]:
        """The stalled partitions (also ``stockwatch_partition_stalled``)."""
        stalled = []
        for tp in set(self._since) - assigned:
            del self._since[tp]
            self.metrics.partition_stalled.labels(tp[0], str(tp[1])).set(0)
        for tp in sorted(assigned):
            since = self._since.get(tp)
            if since is None or tp not in busy or since[1] != committed.get(tp):
                self._since[tp] = (now, committed.get(tp))
            elif now - since[0] >= self.after_s:
                stalled.append(tp)
            self.metrics.partition_stalled.labels(tp[0], str(tp[1])).set(1 if tp in stalled else 0)
        return stalled


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
