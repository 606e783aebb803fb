"""The anomaly audit trail of `stockwatch consume` (``audit_anomalies = true``).

Anomalies are upserted with ``_id = anomaly_id``, so a redelivered batch rewrites the same
documents instead of adding copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import MongoClient, ReplaceOne
from pymongo.errors import PyMongoError

from config.groups import MongoSettings
from consumer.ports import DeliveryError

__all__ = ["AUDIT_COLLECTION", "AnomalyAudit", "AuditFailedError"]

AUDIT_COLLECTION = "anomalies"


class AuditFailedError(DeliveryError):
    """The audit write failed; the batch is retried like a failed Kafka delivery."""


class AnomalyAudit:
    """Writes anomaly events to ``<db>.anomalies`` idempotently."""

    def __init__(
        self, uri: str, db: str, *, collection: str = AUDIT_COLLECTION, timeout_ms: int = 5000
    ) -> None:
        self._client: MongoClient[dict[str, Any]] = MongoClient(
            uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
        )
        self._collection = self._client[db][collection]

    @classmethod
    def from_settings(cls, mongo: MongoSettings) -> AnomalyAudit:
        """The audit trail in ``mongo.db`` (with the consumer's timeout, not the worker's)."""
        return cls(mongo.uri, mongo.db)

    def write(self, anomalies: Sequence[dict[str, Any]]) -> int:
        """Upsert each event under ``_id = anomaly_id``; returns how many were written."""
        if not anomalies:
            return 0
        ops = [
            ReplaceOne({"_id": a["anomaly_id"]}, {"_id": a["anomaly_id"], **a}, upsert=True)
            for a in anomalies
        ]
        try:
            self._collection.bulk_write(ops, ordered=False)
        except (PyMongoError, KeyError, TypeError, ValueError, OverflowError) as exc:
            # not only the driver's errors: a server that answers oddly (FerretDB's bulk result
            # without nModified) must be bounded by the audit guard, not crash the loop
            raise AuditFailedError(f"audit write of {len(ops)} anomalies failed: {exc!r}") from exc
        return len(ops)

    def close(self) -> None:
        """Close the client."""
        self._client.close()
