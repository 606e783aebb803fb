"""Analyst feedback in Mongo: labels (``feedback``), their counts in the model registry, suppressions.

Labels are stored under ``_id = episode_id`` (a relabel replaces the earlier one; a redelivered
message rewrites the same document), and the registry's counts are recounted from them, so
counting is idempotent whatever Kafka redelivers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database

from consumer.adapters.mongo.errors import mongo_errors
from detection.items import ITEM_INPUT_KEYS

__all__ = ["FEEDBACK_COLLECTION", "SUPPRESSIONS_COLLECTION", "FeedbackStore"]

FEEDBACK_COLLECTION = "feedback"
SUPPRESSIONS_COLLECTION = "suppressions"
_REGISTRY = "model_versions"
_LABELS = ("confirmed", "false_positive")


class FeedbackStore:
    """Mixed into ``WorkerMongo``: everything the feedback topic leaves in Mongo."""

    _db: Database[dict[str, Any]]
    inventory_name: str

    def anomaly_record(self, anomaly_id: str, collection: str) -> dict[str, Any] | None:
        """The audit document of an anomaly (model_version, item_id, item), or None; ``anomaly_id`` may
        also be an ``episode_id`` (the audited open/escalated events of the episode carry it)."""
        with mongo_errors(f"reading {collection}"):
            return self._db[collection].find_one(
                {"$or": [{"_id": anomaly_id}, {"episode_id": anomaly_id}]},
                {"model_version": 1, "item_id": 1, "item": 1, "reasons": 1},
            )

    def record_feedback(self, doc: Mapping[str, Any]) -> bool:
        """Store one label under ``_id``; True when it is new or changed (not a redelivered copy)."""
        with mongo_errors("writing feedback"):
            before = self._db[FEEDBACK_COLLECTION].find_one_and_replace(
                {"_id": doc["_id"]}, dict(doc), upsert=True, return_document=ReturnDocument.BEFORE
            )
        return before is None or any(before.get(k) != doc.get(k) for k in ("label", "when", "model_version"))

    def count_feedback(self, model_version: str) -> dict[str, Any]:
        """Labels of ``model_version``'s anomalies, recounted, written into its registry document."""
        with mongo_errors("counting feedback"):
            counts: dict[str, Any] = {
                label: int(
                    self._db[FEEDBACK_COLLECTION].count_documents(
                        {"model_version": model_version, "label": label}
                    )
                )
                for label in _LABELS
            }
            total = counts["confirmed"] + counts["false_positive"]
            counts["precision"] = counts["confirmed"] / total if total else None
            counts["updated_at"] = datetime.now(UTC).isoformat()
            self._db[_REGISTRY].update_one(
                {"_id": model_version}, {"$set": {"feedback": counts}}, upsert=True
            )
        return counts

    def registry_feedback(self, version: str) -> dict[str, Any] | None:
        """The ``feedback`` counts of a registry document (None when it has none)."""
        with mongo_errors("reading the model registry"):
            doc = self._db[_REGISTRY].find_one({"_id": version}, {"feedback": 1})
        return dict(doc["feedback"]) if doc and isinstance(doc.get("feedback"), dict) else None

    def labelled(self) -> list[dict[str, Any]]:
        """Every stored label (``label``, ``item_id``, ``item`` when the audit had the scored state)."""
        with mongo_errors("reading feedback"):
            return list(
                self._db[FEEDBACK_COLLECTION].find(
                    {}, {"label": 1, "item_id": 1, "item": 1}, batch_size=10_000
                )
            )

    def inventory_items(self, item_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The current inventory documents of ``item_ids`` (by ``item_id``, ``sku`` or ``_id``)."""
        ids = list(item_ids)
        if not ids:
            return []
        query = {"$or": [{"item_id": {"$in": ids}}, {"sku": {"$in": ids}}, {"_id": {"$in": ids}}]}
        with mongo_errors(f"reading {self.inventory_name}"):
            return list(self._db[self.inventory_name].find(query, dict.fromkeys(ITEM_INPUT_KEYS, 1)))

    def store_suppression(self, doc: Mapping[str, Any]) -> None:
        """Insert or replace one suppression (``_id`` = the labelled episode)."""
        with mongo_errors("writing a suppression"):
            self._db[SUPPRESSIONS_COLLECTION].replace_one({"_id": doc["_id"]}, dict(doc), upsert=True)

    def lift_suppression(self, episode_id: str, when: str, who: str | None) -> bool:
        """End the suppression of ``episode_id`` at ``when`` (kept, for the audit trail); False if none is active."""
        with mongo_errors("lifting a suppression"):
            found = self._db[SUPPRESSIONS_COLLECTION].find_one({"_id": episode_id})
            if found is None or _utc(str(found.get("expires_at", ""))) <= _utc(when):
                return False
            change = {"expires_at": when, "lifted_at": when, "lifted_by": who}
            self._db[SUPPRESSIONS_COLLECTION].update_one({"_id": episode_id}, {"$set": change})
            return True

    def suppressions(self) -> list[dict[str, Any]]:
        """Every stored suppression, active or not (the caller filters by expiry)."""
        with mongo_errors("reading suppressions"):
            return list(self._db[SUPPRESSIONS_COLLECTION].find({}))


def _utc(iso: str) -> datetime:
    """An ISO 8601 time as aware UTC (naive = UTC; unreadable = the epoch, i.e. long expired)."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
