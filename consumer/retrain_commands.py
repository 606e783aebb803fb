"""The implementation of ``retrain-worker``, ``ctl`` and ``scan`` (loaded only when one of them runs)."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import secrets
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from consumer.control import TERMINAL_ACKS, Ack, new_command
from consumer.events import EVENT_SCHEMA_VERSION, anomaly_id
from consumer.gate import GateConfig
from consumer.kafka_io import (
    ControlSource,
    JsonPublisher,
    KafkaUnavailableError,
    StatusTail,
    ensure_worker_topics,
)
from consumer.lease import Lease
from consumer.mongo_io import MongoUnavailableError, WorkerMongo
from consumer.retrain import RetrainConfig, Retrainer
from consumer.snapshot import DocCounts, iter_item_chunks
from consumer.status import StatusReporter
from consumer.stores import store_from_settings
from consumer.worker import RetrainWorker
from detection import FEATURE_NAMES, ForestParams, ModelNotFoundError, ModelVerificationError

if TYPE_CHECKING:
    from consumer.settings import Settings

__all__ = [
    "build_worker",
    "cmd_ctl",
    "cmd_retrain_worker",
    "cmd_scan",
    "retrain_config",
]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_NOT_PROMOTED = 0, 1, 2, 3, 4


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
    db = WorkerMongo(
        settings.mongo_uri,
        settings.mongo_db,
        inventory=settings.mongo_collection,
        timeout_ms=int(settings.worker_mongo_timeout_s * 1000),
    )
    db.ensure_indexes()
    store = store_from_settings(settings)
    publisher = JsonPublisher(settings.kafka_bootstrap)
    control = ControlSource(
        settings.kafka_bootstrap, settings.control_topic, group_id=settings.control_group_id
    )

    def announce(event: dict[str, Any]) -> None:
        publisher.publish(settings.status_topic, [event])

    retrainer = Retrainer(
        db=db, store=store, announce=announce, config=retrain_config(settings), **retrainer_kw
    )
    key = settings.control_key.get_secret_value().encode() if settings.control_key else None
    worker = RetrainWorker(
        control=control,
        reporter=StatusReporter(publisher, settings.status_topic, worker=owner),
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


def cmd_retrain_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run the worker until SIGTERM/SIGINT (or ``--run-for`` seconds)."""
    if settings.control_key is None:
        log.warning("no STOCKWATCH_CONTROL_KEY: every control command will be rejected")
    try:
        worker, closables = build_worker(settings)
    except (KafkaUnavailableError, MongoUnavailableError, ValueError) as exc:
        print(f"stockwatch retrain-worker: {exc}", file=sys.stderr)
        return EXIT_FAILED
    stop = lambda *_: worker.stop_event.set()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("retrain worker %s listening on %s", worker.lease.owner, settings.control_topic)
    try:
        worker.run(timeout_s=args.run_for)
    finally:
        for c in closables:
            c.close()
    return EXIT_OK


def cmd_ctl(args: argparse.Namespace, settings: Settings) -> int:
    """Sign and publish a command; wait for its terminal acknowledgement unless ``--no-wait``."""
    if settings.control_key is None or not settings.control_key.get_secret_value():
        print("stockwatch ctl: set STOCKWATCH_CONTROL_KEY to sign commands", file=sys.stderr)
        return EXIT_USAGE
    if (args.action == "rollback") != (args.version is not None):
        print("stockwatch ctl: `rollback` takes a VERSION, the other actions none", file=sys.stderr)
        return EXIT_USAGE
    cmd = new_command(
        args.action,
        settings.control_key.get_secret_value().encode(),
        args={"version": args.version} if args.version else {},
        issued_by=f"{getpass.getuser()}@{socket.gethostname()}",
    )
    tail = None
    try:
        ensure_worker_topics(settings.kafka_bootstrap, [settings.control_topic, settings.status_topic])
        if not args.no_wait:
            tail = StatusTail(settings.kafka_bootstrap, settings.status_topic)
            tail.start()
        publisher = JsonPublisher(settings.kafka_bootstrap, client_id="stockwatch-ctl")
        try:
            publisher.publish(settings.control_topic, [cmd.model_dump(mode="json")])
        finally:
            publisher.close()
        print(orjson.dumps({"sent": cmd.command.value, "command_id": cmd.command_id}).decode(), flush=True)
        if tail is None:
            return EXIT_OK
        return _wait_for(tail, cmd.command_id, args.timeout or settings.ctl_timeout_s)
    except KafkaUnavailableError as exc:
        print(f"stockwatch ctl: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if tail is not None:
            tail.close()


def _wait_for(tail: StatusTail, command_id: str, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for msg in tail.poll(min(1.0, max(0.05, deadline - time.monotonic()))):
            if msg.get("type") != "command_ack" or msg.get("command_id") != command_id:
                continue
            print(orjson.dumps(msg).decode(), flush=True)
            status = msg.get("status")
            if status in (Ack.REJECTED, Ack.FAILED):
                return EXIT_FAILED
            if status == Ack.DONE and msg.get("command") == "retrain":
                promoted = (msg.get("result") or {}).get("status") == "promoted"
                return EXIT_OK if promoted else EXIT_NOT_PROMOTED
            if status in TERMINAL_ACKS:
                return EXIT_OK
    print(f"stockwatch ctl: no outcome for {command_id} within {timeout_s:g}s", file=sys.stderr)
    return EXIT_TIMEOUT


def cmd_scan(args: argparse.Namespace, settings: Settings) -> int:
    """Score the Mongo inventory snapshot with CURRENT; anomalies as JSON lines or to the anomaly topic."""
    try:
        model = store_from_settings(settings).load()
    except (ModelNotFoundError, ModelVerificationError) as exc:
        print(f"stockwatch scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    db = WorkerMongo(
        settings.mongo_uri,
        settings.mongo_db,
        inventory=settings.mongo_collection,
        timeout_ms=int(settings.worker_mongo_timeout_s * 1000),
    )
    publisher = JsonPublisher(settings.kafka_bootstrap, client_id="stockwatch-scan") if args.publish else None
    source = f"mongo:{settings.mongo_db}.{settings.mongo_collection}"
    counts, row, found = DocCounts(), 0, 0
    try:
        expected, next_log = db.count_inventory(), settings.retrain_progress_every
        docs = db.iter_inventory(batch_size=settings.retrain_batch_size)
        for chunk in iter_item_chunks(
            docs, chunk_size=settings.retrain_batch_size, require_id=True, counts=counts
        ):
            events = _scan_events(model, chunk, source, row)
            row += len(chunk)
            found += len(events)
            if publisher is not None:
                publisher.publish(settings.anomaly_topic, events, key_field="item_id")
            else:
                sys.stdout.buffer.write(
                    b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events)
                )
                sys.stdout.flush()
            if counts.read >= next_log:
                next_log = counts.read + settings.retrain_progress_every
                log.info(
                    "scan progress: %d/~%d documents, %d anomalies, %d invalid",
                    counts.read,
                    expected,
                    found,
                    counts.invalid,
                )
    except (MongoUnavailableError, KafkaUnavailableError) as exc:
        print(f"stockwatch scan: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        db.close()
        if publisher is not None:
            publisher.close()
    print(
        orjson.dumps(
            {"scanned": row, "anomalies": found, "invalid": counts.invalid, "model_version": model.version}
        ).decode(),
        file=sys.stderr,
    )
    return EXIT_OK


def _scan_events(model: Any, chunk: list[Any], source: str, first_row: int) -> list[dict[str, Any]]:
    """Anomaly events (the consumer's AnomalyEvent shape) for one chunk of items.

    ``source.topic`` is ``mongo:<db>.<collection>`` and ``offset`` the row of the scan; the
    ``anomaly_id`` is derived from the item id and the model version, so scanning an unchanged
    item with the same model again yields the same id.
    """
    decisions = model.decide(chunk)
    version = model.version or "unversioned"
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    events = []
    for i in np.flatnonzero(decisions.is_anomaly).tolist():
        item = chunk[i]
        events.append(
            {
                "schema_version": EVENT_SCHEMA_VERSION,
                "anomaly_id": anomaly_id(f"{source}/{item.item_id}", 0, 0, version),
                "item_id": item.item_id,
                "event_id": item.event_id,
                "is_anomaly": True,
                "score": float(decisions.scores[i]),
                "threshold": float(model.threshold),
                "model_version": version,
                "features": dict(zip(FEATURE_NAMES, decisions.features[i].tolist(), strict=True)),
                "source": {"topic": source, "partition": 0, "offset": first_row + i, "timestamp": None},
                "detected_at": now,
                "item": item.model_dump(mode="json"),
                "severity": str(decisions.severity(i)),
                "reasons": [str(r) for r in decisions.reasons(i)],
            }
        )
    return events
