"""The optional Mongo audit, bounded: Mongo down never holds the Kafka outputs back for long.

A failed audit write fails the batch (it is rewound and retried, like a failed delivery) for at
most ``attempts`` consecutive failures; then the audit of that batch is skipped — an ERROR log,
``stockwatch_audit_failures_total`` counts the failed writes, ``stockwatch_audit_skipped_total``
the anomalies not audited — and the outputs go out and offsets advance. While Mongo stays down,
later batches skip the audit without waiting for Mongo's timeout, except for one try per
``cooldown_s``; the first successful write ends this (an INFO line). The ERROR is logged when the
outage starts, then at most once per ``log_every_s`` with the count of batches skipped since.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from consumer.ports import Audit, DeliveryError
from consumer.scoring.metrics import ConsumerMetrics

__all__ = ["AUDIT_ATTEMPTS", "AUDIT_COOLDOWN_S", "AuditGuard"]

log = logging.getLogger(__name__)

AUDIT_ATTEMPTS = 3  # consecutive failed writes before a batch's audit is skipped
AUDIT_COOLDOWN_S = 30.0  # Mongo failing: try it once per this long, skip the audit in between
AUDIT_LOG_EVERY_S = 60.0  # Mongo failing: one ERROR line per this long, not one per batch


class AuditGuard:
    """Wraps an :class:`Audit`: ``write`` raises (retry the batch) or returns (written or skipped)."""

    def __init__(
        self,
        audit: Audit,
        metrics: ConsumerMetrics,
        *,
        attempts: int = AUDIT_ATTEMPTS,
        cooldown_s: float = AUDIT_COOLDOWN_S,
        log_every_s: float = AUDIT_LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audit = audit
        self.metrics = metrics
        self.attempts = attempts
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._failures = 0  # consecutive failed writes
        self._next_try = 0.0
        self.log_every_s = log_every_s
        self._logged_at: float | None = None  # last ERROR of the current outage (None: no outage)
        self._unlogged = [0, 0]  # batches, anomalies skipped since that ERROR

    def write(self, anomalies: Sequence[dict[str, Any]], where: str) -> bool:
        """Audit ``anomalies`` (of the batch ``where``); False when skipped. Raises the audit's
        DeliveryError while the batch should be retried."""
        now = self.clock()
        if self._failures >= self.attempts and now < self._next_try:
            self._skip(anomalies, where, "Mongo still failing", now)
            return False
        try:
            written = self.audit.write(anomalies)
        except DeliveryError as exc:
            self._failures += 1
            self.metrics.audit_failures.inc()
            if self._failures < self.attempts:
                raise
            self._next_try = now + self.cooldown_s
            self._skip(anomalies, where, repr(exc), now)
            return False
        if self._failures >= self.attempts:
            log.info(
                "audit writes work again after %d failed writes; %d more batch(es) (%d anomalies) "
                "were not audited since the last error line",
                self._failures,
                *self._unlogged,
            )
        self._failures, self._logged_at, self._unlogged = 0, None, [0, 0]
        self.metrics.audit_writes.inc(written)
        return True

    def _skip(self, anomalies: Sequence[dict[str, Any]], where: str, why: str, now: float) -> None:
        self.metrics.audit_skipped.inc(len(anomalies))
        self._unlogged[0] += 1
        self._unlogged[1] += len(anomalies)
        if self._logged_at is not None:
            if now - self._logged_at < self.log_every_s:
                return
            log.error(
                "audit still skipped (%s): %d batch(es), %d anomalies not audited in the last %.0fs; "
                "the events are still published",
                why,
                *self._unlogged,
                now - self._logged_at,
            )
            self._logged_at, self._unlogged = now, [0, 0]
            return
        self._logged_at, self._unlogged = now, [0, 0]
        log.error(
            "audit of %d anomalies of %s skipped after %d failed writes (%s); the events are still "
            "published (anomaly_id %s%s)",
            len(anomalies),
            where,
            self._failures,
            why,
            ", ".join(str(a.get("anomaly_id")) for a in anomalies[:5]),
            ", ..." if len(anomalies) > 5 else "",
        )

    def close(self) -> None:
        """Close the audit store."""
        self.audit.close()
