"""Tools around the services: seeding an inventory and dropping a database (the demo)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pymongo import MongoClient

from consumer.adapters.mongo.errors import mongo_errors

__all__ = ["drop_database", "replace_collection"]


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


def drop_database(uri: str, db: str) -> None:
    """Drop ``db`` (a demo run's own database) if it exists."""
    with _client(uri, f"dropping {db}") as client:
        client.drop_database(db)
