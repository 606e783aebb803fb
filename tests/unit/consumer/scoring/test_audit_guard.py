"""AuditGuard: a failing Mongo audit holds a batch back for a bounded number of attempts only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from consumer.ports import DeliveryError
from consumer.scoring.audit_guard import AuditGuard
from consumer.scoring.metrics import ConsumerMetrics


class FlakyAudit:
    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    def write(self, anomalies: Sequence[dict[str, Any]]) -> int:
        self.calls += 1
        if self.down:
            raise DeliveryError("mongo down")
        return len(anomalies)

    def close(self) -> None: ...


def sample(metrics: ConsumerMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


def test_after_n_failures_the_audit_is_skipped_then_tried_once_per_cooldown() -> None:
    now = [0.0]
    audit, metrics = FlakyAudit(), ConsumerMetrics()
    guard = AuditGuard(audit, metrics, attempts=3, cooldown_s=30.0, clock=lambda: now[0])
    batch = [{"anomaly_id": "a"}, {"anomaly_id": "b"}]
    for _ in range(2):  # the batch is retried (the loop rewinds it)
        with pytest.raises(DeliveryError):
            guard.write(batch, "in[0]@0")
    assert guard.write(batch, "in[0]@0") is False  # the third failure: skipped, not raised
    assert sample(metrics, "stockwatch_audit_failures_total") == 3
    assert sample(metrics, "stockwatch_audit_skipped_total") == 2
    assert audit.calls == 3

    now[0] = 10.0  # Mongo known to be down: later batches skip without waiting for its timeout
    assert guard.write(batch, "in[0]@2") is False and audit.calls == 3
    now[0] = 31.0  # one try per cooldown, skipped at once when it fails
    assert guard.write(batch, "in[0]@4") is False and audit.calls == 4
    assert sample(metrics, "stockwatch_audit_skipped_total") == 6

    audit.down = False
    now[0] = 62.0
    assert guard.write(batch, "in[0]@6") is True
    assert sample(metrics, "stockwatch_audit_writes_total") == 2
    audit.down = True  # a new outage gets its full attempts again
    with pytest.raises(DeliveryError):
        guard.write(batch, "in[0]@8")
