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
from consumer.observability import ProbeServer
from consumer.retraining.feedback import FeedbackReader, feedback_counter
from consumer.retraining.gate import GateConfig
from consumer.retraining.lease import Lease
from consumer.retraining.monitor import WorkerHealth, WorkerMonitor
from consumer.retraining.retrainer import RetrainConfig, Retrainer
from consumer.retraining.status import StatusReporter
from consumer.retraining.worker import RetrainWorker
from consumer.stores import store_from_settings
from detection import ForestParams

__all__ = ["build_worker", "retrain_config", "worker_mongo", "worker_monitor", "worker_server"]


def worker_mongo(settings: Settings) -> WorkerMongo:
    """The Mongo adapter of the retrain worker and `stockwatch scan`."""
    return WorkerMongo.from_settings(settings.mongo)


def retrain_config(settings: Settings) -> RetrainConfig:
    """The retrain knobs of ``settings`` (the retrain and gate slices, and the store's retention)."""
    retrain, gate = settings.retrain, settings.gate
    extra = orjson.loads(retrain.exclude_filter) if retrain.exclude_filter else None
    if extra is not None and not isinstance(extra, dict):
        raise ValueError("retrain_exclude_filter must be a JSON object (a Mongo filter)")
    return RetrainConfig(
        batch_size=retrain.batch_size,
        progress_every=retrain.progress_every,
        max_attempts=retrain.max_attempts,
        backoff_s=retrain.backoff_s,
        params=ForestParams(contamination=retrain.contamination),
        exclude_flagged=retrain.exclude_flagged,
        flagged_collection=retrain.flagged_collection,
        exclude_filter=extra,
        gate=GateConfig(
            contamination=retrain.contamination,
            rate_tolerance=gate.rate_tolerance,
            max_rate_shift=gate.max_rate_shift,
            max_ks=gate.max_ks,
            min_labels=gate.min_labels,
            max_alert_ratio=gate.max_alert_ratio,
            max_recall_drop=gate.max_recall_drop,
        ),
        sample_size=gate.sample_size,
        keep_rejected=settings.models.keep,
        detector=settings.models.detector,
        alert_budget_per_1000=settings.models.alert_budget_per_1000,
        rules=settings.models.rule_table(),
        group_field=settings.models.peer_group_field,
    )


def worker_monitor(settings: Settings) -> WorkerMonitor:
    """The worker's metrics and probe state (``/healthz`` goes stale after ``health_stale_s``)."""
    monitor = WorkerMonitor(health=WorkerHealth(stale_s=settings.scoring.health_stale_s))
    monitor.metrics.retrain_interval.set(settings.retrain.interval_s)
    return monitor


def worker_server(monitor: WorkerMonitor, settings: Settings, *, port: int | None = None) -> ProbeServer:
    """The worker's ``/metrics``, ``/healthz``, ``/readyz`` on ``http_host:worker_http_port``, bound
    (``OSError`` when the port is taken) but not yet serving."""
    return ProbeServer(
        render_metrics=monitor.metrics.render,
        probes={"/healthz": monitor.health.healthz, "/readyz": monitor.health.readyz},
        host=settings.http.host,
        port=settings.http.worker_port if port is None else port,
        name="stockwatch-worker-http",
    )


def build_worker(
    settings: Settings, *, monitor: WorkerMonitor | None = None, **retrainer_kw: Any
) -> tuple[RetrainWorker, list[Any]]:
    """A worker wired to the real Kafka, Mongo and model store; also returns what to close."""
    monitor = monitor if monitor is not None else worker_monitor(settings)
    kafka, topics, control_settings = settings.kafka, settings.kafka.topics, settings.control
    ensure_worker_topics(
        kafka,
        [topics.control, topics.status, topics.feedback],
        replication_factor=topics.replication_factor,
    )
    owner = settings.retrain.worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    db = worker_mongo(settings)
    db.ensure_indexes()
    store = store_from_settings(settings)
    publisher = JsonPublisher(kafka)
    control = ControlSource(kafka, topics.control, group_id=control_settings.group_id)
    feed = ControlSource(
        kafka,
        topics.feedback,
        group_id=f"{control_settings.group_id}.feedback",
        client_id="stockwatch-retrain-worker-feedback",
    )
    feedback = FeedbackReader(  # stockwatch_feedback_total is served on the worker's /metrics
        feed=feed,
        db=db,
        audit_collection=settings.retrain.flagged_collection,
        counter=feedback_counter(monitor.metrics.registry),
    )

    key = control_settings.key.get_secret_value().encode() if control_settings.key else None
    reporter = StatusReporter(publisher, topics.status, worker=owner, key=key, monitor=monitor)
    retrainer = Retrainer(  # announcements are signed like acks: consumers act only on verified ones
        db=db, store=store, announce=reporter.publish, config=retrain_config(settings), **retrainer_kw
    )
    worker = RetrainWorker(
        control=control,
        reporter=reporter,
        db=db,
        store=store,
        retrainer=retrainer,
        lease=Lease(db, owner, ttl_s=settings.retrain.lease_ttl_s),
        key=key,
        interval_s=settings.retrain.interval_s,
        cooldown_s=settings.retrain.cooldown_s,
        max_age_s=control_settings.max_age_s,
        monitor=monitor,
        feedback=feedback,
    )
    return worker, [control, feed, publisher, db]
