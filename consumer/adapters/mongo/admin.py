"""Tools around the services: seeding an inventory and dropping a database (the demo)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import MongoClient

from consumer.adapters.mongo.errors import mongo_errors

__all__ = ["drop_database", "replace_collection"]


def replace_collection(uri: str, db: str, collection: str, docs: Sequence[Mapping[str, Any]]) -> int:
    """Drop ``db.collection`` and insert ``docs`` into it; returns how many were inserted."""
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        with mongo_errors(f"seeding {db}.{collection}"):
            client[db].drop_collection(collection)
            if docs:
                client[db][collection].insert_many([dict(d) for d in docs], ordered=False)
            return int(client[db][collection].count_documents({}))
    finally:
        client.close()


def drop_database(uri: str, db: str) -> None:
    """Drop ``db`` (a demo run's own database) if it exists."""
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        with mongo_errors(f"dropping {db}"):
            client.drop_database(db)
    finally:
        client.close()
