"""Every pymongo error leaves this package as ``MongoUnavailableError`` (callers never import pymongo)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pymongo.errors import PyMongoError

from consumer.ports import MongoUnavailableError

__all__ = ["mongo_errors"]


@contextlib.contextmanager
def mongo_errors(what: str) -> Iterator[None]:
    """Re-raise a pymongo error inside the block as ``MongoUnavailableError`` naming ``what``."""
    try:
        yield
    except PyMongoError as exc:
        raise MongoUnavailableError(f"{what}: {exc!r}") from exc
