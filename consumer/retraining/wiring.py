"""Wires `stockwatch retrain-worker` from settings: Mongo, the model store, control and status topics."""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any

import orjson

from config import Settings
from consumer.adapters.kafka import ControlSource, JsonPublisher, ensure_worker_topics
from consumer.adapters.mongo import WorkerMongo
from consumer.retraining.gate import GateConfig
from consumer.retraining.lease import Lease
from consumer.retraining.retrainer import RetrainConfig, Retrainer
from consumer.retraining.status import StatusReporter
from consumer.retraining.worker import RetrainWorker
from consumer.stores import store_from_settings
from detection import ForestParams

__all__ = ["build_worker", "retrain_config", "worker_mongo"]


def worker_mongo(settings: Settings) -> WorkerMongo:
    """The Mongo adapter of the retrain worker and `stockwatch scan`."""
    return WorkerMongo(
        settings.mongo_uri,
        settings.mongo_db,
        inventory=settings.mongo_collection,
        timeout_ms=int(settings.worker_mongo_timeout_s * 1000),
    )


def retrain_config(settings: Settings) -> RetrainConfig:
    """The retrain knobs of ``settings``."""
    extra = orjson.loads(settings.retrain_exclude_filter) if settings.retrain_exclude_filter else None
    if extra is not None and not isinstance(extra, dict):
        raise ValueError("retrain_exclude_filter must be a JSON object (a Mongo filter)")
    return RetrainConfig(
        batch_size=settings.retrain_batch_size,
        progress_every=settings.retrain_progress_every,
        max_attempts=settings.retrain_max_attempts,
        backoff_s=settings.retrain_backoff_s,
        params=ForestParams(contamination=settings.retrain_contamination),
        exclude_flagged=settings.retrain_exclude_flagged,
        flagged_collection=settings.retrain_flagged_collection,
        exclude_filter=extra,
        gate=GateConfig(
            contamination=settings.retrain_contamination,
            rate_tolerance=settings.gate_rate_tolerance,
            max_rate_shift=settings.gate_max_rate_shift,
            max_ks=settings.gate_max_ks,
        ),
        sample_size=settings.gate_sample_size,
        keep_rejected=settings.model_keep,
    )


def build_worker(settings: Settings, **retrainer_kw: Any) -> tuple[RetrainWorker, list[Any]]:
    """A worker wired to the real Kafka, Mongo and model store; also returns what to close."""
    ensure_worker_topics(settings.kafka_bootstrap, [settings.control_topic, settings.status_topic])
    owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    db = worker_mongo(settings)
    db.ensure_indexes()
    store = store_from_settings(settings)
    publisher = JsonPublisher(settings.kafka_bootstrap)
    control = ControlSource(
        settings.kafka_bootstrap, settings.control_topic, group_id=settings.control_group_id
    )

    key = settings.control_key.get_secret_value().encode() if settings.control_key else None
    reporter = StatusReporter(publisher, settings.status_topic, worker=owner, key=key)
    retrainer = Retrainer(  # announcements are signed like acks: consumers act only on verified ones
        db=db, store=store, announce=reporter.publish, config=retrain_config(settings), **retrainer_kw
    )
    worker = RetrainWorker(
        control=control,
        reporter=reporter,
        db=db,
        store=store,
        retrainer=retrainer,
        lease=Lease(db, owner, ttl_s=settings.lease_ttl_s),
        key=key,
        interval_s=settings.retrain_interval_s,
        cooldown_s=settings.retrain_cooldown_s,
        max_age_s=settings.control_max_age_s,
    )
    return worker, [control, publisher, db]
