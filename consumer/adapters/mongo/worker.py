"""The Mongo state of `stockwatch retrain-worker`, `ctl` and `scan`: inventory snapshots, model
registry, retrain lease and seen control commands (and, from :class:`FeedbackStore`, analyst labels
and suppressions).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pymongo import MongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from config.groups import MongoSettings
from consumer.adapters.mongo.errors import mongo_errors
from consumer.adapters.mongo.feedback import FeedbackStore
from consumer.adapters.mongo.prefetch import cursor_batches, prefetched
from consumer.ports import MongoUnavailableError
from detection.items import ITEM_INPUT_KEYS

__all__ = ["WorkerMongo"]

REGISTRY_COLLECTION = "model_versions"
LEASE_COLLECTION = "leases"
SEEN_COMMANDS_COLLECTION = "control_commands"
INVENTORY_PROJECTION: dict[str, int] = dict.fromkeys(ITEM_INPUT_KEYS, 1)  # what parse_item reads


class WorkerMongo(FeedbackStore):
    """The retrain worker's Mongo state: inventory snapshots, registry, lease, seen commands."""

    def __init__(self, uri: str, db: str, *, inventory: str = "inventory", timeout_ms: int = 5000) -> None:
        try:  # a malformed URI is refused here, before any I/O (pymongo raises ValueError for some)
            self._client: MongoClient[dict[str, Any]] = MongoClient(
                uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, socketTimeoutMS=30_000
            )
        except (PyMongoError, ValueError) as exc:
            raise MongoUnavailableError(f"unusable URI: {exc}") from None
        self._db = self._client[db]
        self.inventory_name = inventory

    @classmethod
    def from_settings(cls, mongo: MongoSettings) -> WorkerMongo:
        """The worker's (and `stockwatch scan`'s) Mongo of ``mongo``."""
        return cls(mongo.uri, mongo.db, inventory=mongo.collection, timeout_ms=int(mongo.timeout_s * 1000))

    def close(self) -> None:
        """Close the client."""
        self._client.close()

    def ensure_indexes(self) -> None:
        """Indexes the worker relies on (``_id`` is unique already; this one speeds pruning)."""
        with mongo_errors("creating indexes"):
            self._db[SEEN_COMMANDS_COLLECTION].create_index("seen_at")

    # ----------------------------------------------------------------- snapshots

    def count_inventory(self) -> int:
        """Estimated size of the inventory collection (for progress logs)."""
        with mongo_errors("counting inventory"):
            return int(self._db[self.inventory_name].estimated_document_count())

    def iter_inventory(
        self,
        *,
        batch_size: int,
        exclude: Mapping[str, Any] | None = None,
        read_ahead: int = 2,
        fields: Sequence[str] = (),
    ) -> Iterator[dict[str, Any]]:
        """Stream the inventory (``find({})`` minus ``exclude``) with a projection, in cursor batches.

        A helper thread runs the cursor up to ``read_ahead`` batches ahead of the caller, so the
        server prepares the next batch while the caller parses this one (a server answers one
        ``getMore`` at a time and waits for the next request otherwise). The cursor is closed and the
        thread joined when the caller stops early; its errors are re-raised here.
        """
        query: dict[str, Any] = {"$nor": [dict(exclude)]} if exclude else {}
        collection = self._db[self.inventory_name]
        with mongo_errors(f"reading {self.inventory_name}"):
            projection = INVENTORY_PROJECTION | dict.fromkeys(filter(None, fields), 1)  # e.g. the peer group
            cursor = collection.find(query, projection, batch_size=batch_size)
            for batch in prefetched(cursor_batches(cursor, batch_size), depth=read_ahead):
                yield from batch

    def find_items(self, item_ids: Sequence[str], *, fields: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Inventory documents of ``item_ids`` (by ``item_id`` or ``_id``), with ``fields`` besides
        the item's: the state's seed lookup."""
        ids = list(item_ids)
        query = {"$or": [{"item_id": {"$in": ids}}, {"_id": {"$in": ids}}]}
        projection = INVENTORY_PROJECTION | dict.fromkeys(filter(None, fields), 1)  # "": no peer group
        with mongo_errors(f"reading {self.inventory_name}"):
            return list(self._db[self.inventory_name].find(query, projection))

    def flagged_item_ids(self, collection: str) -> set[str]:
        """``item_id`` of every document of the anomaly audit collection (empty if it is absent)."""
        with mongo_errors(f"reading {collection}"):
            cursor = self._db[collection].find({}, {"item_id": 1, "_id": 0}, batch_size=10_000)
            return {str(doc["item_id"]) for doc in cursor if doc.get("item_id") is not None}

    # ----------------------------------------------------------------- model registry

    def record_version(self, doc: Mapping[str, Any]) -> None:
        """Insert or replace one registry document (``_id`` = version or candidate id)."""
        with mongo_errors("writing the model registry"):
            self._db[REGISTRY_COLLECTION].replace_one({"_id": doc["_id"]}, dict(doc), upsert=True)

    def registry(self, *, status: str | None = None) -> list[dict[str, Any]]:
        """Registry documents, oldest first (optionally only one ``status``)."""
        with mongo_errors("reading the model registry"):
            query = {"status": status} if status else {}
            return list(self._db[REGISTRY_COLLECTION].find(query).sort("recorded_at", 1))

    # ----------------------------------------------------------------- lease (single flight)

    def try_acquire_lease(self, name: str, owner: str, *, ttl_s: float, now: float) -> dict[str, Any] | None:
        """Take the lease if it is free, expired or already ours; None when another owner holds it."""
        query = {"_id": name, "$or": [{"owner": None}, {"expires_at": {"$lt": now}}, {"owner": owner}]}
        update = {"$set": {"owner": owner, "expires_at": now + ttl_s, "acquired_at": now}}
        try:
            with mongo_errors("acquiring the retrain lease"):
                return self._db[LEASE_COLLECTION].find_one_and_update(
                    query, update, upsert=True, return_document=ReturnDocument.AFTER
                )
        except MongoUnavailableError as exc:
            if isinstance(exc.__cause__, DuplicateKeyError):
                return None  # the document exists and matched none of the free conditions
            raise

    def renew_lease(self, name: str, owner: str, *, ttl_s: float, now: float) -> bool:
        """Push the expiry forward; False when the lease is no longer ours."""
        with mongo_errors("renewing the retrain lease"):
            res = self._db[LEASE_COLLECTION].update_one(
                {"_id": name, "owner": owner}, {"$set": {"expires_at": now + ttl_s}}
            )
            return res.matched_count == 1

    def release_lease(self, name: str, owner: str, *, now: float, outcome: Mapping[str, Any]) -> None:
        """Free the lease and remember when and how the run ended (for the cooldown)."""
        with mongo_errors("releasing the retrain lease"):
            self._db[LEASE_COLLECTION].update_one(
                {"_id": name, "owner": owner},
                {"$set": {"owner": None, "expires_at": 0.0, "finished_at": now, "last": dict(outcome)}},
            )

    def read_lease(self, name: str) -> dict[str, Any] | None:
        """The lease document as stored (None before the first run)."""
        with mongo_errors("reading the retrain lease"):
            return self._db[LEASE_COLLECTION].find_one({"_id": name})

    # ----------------------------------------------------------------- replay protection

    def remember_command(self, command_id: str, *, command: str, issued_at: str, now: float) -> bool:
        """Record a command id; False when it was seen before (a replay)."""
        doc = {"_id": command_id, "command": command, "issued_at": issued_at, "seen_at": now}
        try:
            with mongo_errors("recording a control command"):
                self._db[SEEN_COMMANDS_COLLECTION].insert_one(doc)
        except MongoUnavailableError as exc:
            if isinstance(exc.__cause__, DuplicateKeyError):
                return False
            raise
        return True

    def prune_commands(self, *, older_than: float) -> int:
        """Forget command ids seen before ``older_than`` (FerretDB has no TTL indexes)."""
        with mongo_errors("pruning control commands"):
            return int(
                self._db[SEEN_COMMANDS_COLLECTION].delete_many({"seen_at": {"$lt": older_than}}).deleted_count
            )
