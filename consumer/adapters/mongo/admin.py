"""Tools around the services: seeding an inventory (`stockwatch seed`, the demo), dropping a database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pymongo import MongoClient, ReplaceOne

from consumer.adapters.mongo.errors import mongo_errors
from consumer.chunks import chunked
from consumer.ports import MongoUnavailableError

__all__ = ["drop_database", "replace_collection", "upsert_items"]

_REPLACE_BATCH = 50  # FerretDB 1.24 stalled (> 10 s) on one update command of 160 replacements


@contextlib.contextmanager
def _client(uri: str, what: str) -> Iterator[MongoClient[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        with mongo_errors(what):
            yield client
    finally:
        client.close()


def replace_collection(uri: str, db: str, collection: str, docs: Sequence[Mapping[str, Any]]) -> int:
    """Drop ``db.collection`` and insert ``docs`` into it; returns how many were inserted."""
    with _client(uri, f"seeding {db}.{collection}") as client:
        client[db].drop_collection(collection)
        if docs:
            client[db][collection].insert_many([dict(d) for d in docs], ordered=False)
        return int(client[db][collection].count_documents({}))


def upsert_items(
    uri: str, db: str, collection: str, docs: Sequence[Mapping[str, Any]], *, timeout_ms: int = 5000
) -> tuple[int, int]:
    """Write each document over the one with its ``item_id`` (others stay); ``(inserted, replaced)``.

    ``docs`` must not repeat an ``item_id`` (the caller keeps the last of each).
    """
    with mongo_errors(f"seeding {db}.{collection}"):  # a malformed URI fails in the constructor
        try:
            client: MongoClient[dict[str, Any]] = MongoClient(
                uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, socketTimeoutMS=60_000
            )
        except ValueError as exc:  # pymongo's own check of the URI (a port that is not a number, ...)
            raise MongoUnavailableError(
                f"seeding {db}.{collection}: the Mongo URI is invalid: {exc}"
            ) from None
        try:
            if not docs:
                client.admin.command("ping")  # an empty file still proves the database answers
                return 0, 0
            inventory = client[db][collection]
            # One lookup per batch, then writes by _id: a filter on item_id per document scans the
            # whole collection each time on FerretDB (no index on it).
            ids = [d["item_id"] for d in docs]
            existing = {
                doc["item_id"]: doc["_id"]
                for doc in inventory.find({"item_id": {"$in": ids}}, {"item_id": 1, "_id": 1})
            }
            new = [dict(d) for d in docs if d["item_id"] not in existing]
            if new:
                inventory.insert_many(new, ordered=False)
            old = [
                ReplaceOne({"_id": existing[d["item_id"]]}, dict(d)) for d in docs if d["item_id"] in existing
            ]
            for ops in chunked(old, _REPLACE_BATCH):
                inventory.bulk_write(ops, ordered=False)
            return len(new), len(old)
        finally:
            client.close()


def drop_database(uri: str, db: str) -> None:
    """Drop ``db`` (a demo run's own database) if it exists."""
    with _client(uri, f"dropping {db}") as client:
        client.drop_database(db)
