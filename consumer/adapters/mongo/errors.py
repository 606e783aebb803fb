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
        # pymongo appends its whole topology description: keep the reason a person can act on
        reason = str(exc).split(", Timeout:")[0].split(", Topology Description:")[0]
        raise MongoUnavailableError(f"{what}: {type(exc).__name__}: {reason}") from exc
