"""The only package that imports pymongo: the anomaly audit (`stockwatch consume`), the retrain
worker's state (`retrain-worker`, `ctl`, `scan`) and seeding (`stockwatch seed`, the demo).

Every pymongo error leaves it as :class:`MongoUnavailableError` (or :class:`AuditFailedError`);
a URI pymongo cannot parse as :class:`MongoUriError` (a setting to fix, never retried).
"""

from consumer.adapters.mongo.admin import drop_database, replace_collection, upsert_items
from consumer.adapters.mongo.audit import AnomalyAudit, AuditFailedError
from consumer.adapters.mongo.uri import check_uri, uri_problem
from consumer.adapters.mongo.worker import WorkerMongo
from consumer.ports import MongoUnavailableError, MongoUriError

__all__ = [
    "AnomalyAudit",
    "AuditFailedError",
    "MongoUnavailableError",
    "MongoUriError",
    "WorkerMongo",
    "check_uri",
    "drop_database",
    "replace_collection",
    "upsert_items",
    "uri_problem",
]
