"""AuditGuard: a failing Mongo audit holds a batch back for a bounded number of attempts only."""

from __future__ import annotations

import logging
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


def test_an_outage_logs_one_error_then_one_a_minute_with_counts_then_info_on_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    audit, metrics = FlakyAudit(), ConsumerMetrics()
    guard = AuditGuard(audit, metrics, attempts=1, cooldown_s=30.0, log_every_s=60.0, clock=lambda: now[0])
    batch = [{"anomaly_id": "a"}, {"anomaly_id": "b"}]
    caplog.set_level(logging.INFO, logger="consumer.scoring.audit_guard")
    for step in range(150):  # 15 batches a second for 10 s, then one every second to t=140 s
        now[0] = step / 15 if step < 150 - 130 else float(step - 10)
        assert guard.write(batch, f"in[0]@{step}") is False
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3  # the start (t=0), t~60, t~120
    assert "anomaly_id a, b" in errors[0].getMessage()
    assert "audit still skipped" in errors[1].getMessage()
    skipped_between = int(errors[1].getMessage().split("): ")[1].split(" batch")[0])
    assert 50 < skipped_between < 100  # every batch between the two lines is counted
    assert sample(metrics, "stockwatch_audit_skipped_total") == 300

    caplog.clear()
    audit.down = False
    now[0] = 200.0
    assert guard.write(batch, "in[0]@150") is True
    (info,) = caplog.records
    assert info.levelno == logging.INFO and "audit writes work again" in info.getMessage()
    audit.down = True  # a new outage logs its start at once
    assert guard.write(batch, "in[0]@151") is False
    assert [r.levelno for r in caplog.records][-1] == logging.ERROR
