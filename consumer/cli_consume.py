"""``stockwatch consume``: the streaming scorer (see :mod:`consumer.service` for the loop).

Signals: the first SIGTERM/SIGINT finishes the current batch, flushes, commits and leaves the
group (exit 0); a second one exits at once (exit 128 + signal number).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the service's modules (Kafka, numba) load only when `consume` runs
    from prometheus_client import CollectorRegistry

    from consumer.cli import Subparsers
    from consumer.health import HealthState
    from consumer.service import Audit, ScoringService, Sink, Source
    from consumer.settings import Settings

__all__ = ["build_service", "cmd_consume", "register"]

log = logging.getLogger(__name__)


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``consume`` command."""
    consume = subparsers.add_parser(
        "consume",
        parents=[common],
        help="score stock updates from Kafka and publish anomaly events",
        description="Consume inventory.stock-updates, score each batch with the current model, publish "
        "anomalies (and dead letters); settings come from STOCKWATCH_* and the config file.",
    )
    consume.add_argument("--max-events", type=int, default=None, help="stop after this many input records")
    consume.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    consume.set_defaults(handler=cmd_consume)


def build_service(
    settings: Settings, *, registry: CollectorRegistry | None = None, health: HealthState | None = None
) -> ScoringService:
    """Wire the service from settings (connects to Kafka; the caller runs and stops it)."""
    from consumer.batch import BatchConfig
    from consumer.health import HealthState
    from consumer.kafka_io import StatusListener, ensure_topics
    from consumer.metrics import ConsumerMetrics
    from consumer.model_watcher import ModelWatcher
    from consumer.service import ScoringService
    from consumer.stores import store_from_settings

    metrics = ConsumerMetrics(registry)
    store = store_from_settings(settings)
    if settings.create_missing_topics:
        outputs = [settings.anomaly_topic, settings.dlq_topic, settings.status_topic]
        ensure_topics(settings.kafka_bootstrap, [*outputs, settings.decisions_topic or ""])
    watcher = ModelWatcher(
        store,
        interval_s=settings.model_poll_interval_s,
        announcements=StatusListener(settings),
        on_refusal=lambda reason: metrics.model_refusals.labels(reason).inc(),
    )
    audit: Audit | None = None
    if settings.audit_anomalies:
        from consumer.mongo_io import AnomalyAudit

        audit = AnomalyAudit(settings.mongo_uri, settings.mongo_db)
    source, sink = _transport(settings)
    return ScoringService(
        source=source,
        sink=sink,
        watcher=watcher,
        config=BatchConfig(
            anomaly_topic=settings.anomaly_topic,
            dlq_topic=settings.dlq_topic,
            decisions_topic=settings.decisions_topic,
            max_message_bytes=settings.max_message_bytes,
        ),
        metrics=metrics,
        health=health if health is not None else HealthState(stale_s=settings.health_stale_s),
        audit=audit,
        poll_timeout_ms=settings.poll_timeout_ms,
        max_poll_records=settings.max_poll_records,
        retry_backoff_s=settings.delivery_retry_backoff_s,
        commit_interval_s=settings.commit_interval_ms / 1000,
        exactly_once=settings.delivery == "exactly-once",
    )


def _transport(settings: Settings) -> tuple[Source, Sink]:
    """The input and output adapters of ``settings.kafka_client``."""
    if settings.kafka_client == "confluent-kafka":
        try:
            from consumer.confluent_io import ConfluentSource, make_confluent_sink
        except ImportError as exc:
            if exc.name != "confluent_kafka":
                raise
            raise SystemExit(
                "STOCKWATCH_KAFKA_CLIENT=confluent-kafka needs confluent-kafka: "
                "pip install 'stockwatch[confluent]'"
            ) from exc
        return ConfluentSource(settings), make_confluent_sink(settings)
    from consumer.kafka_io import KafkaSource, make_sink

    return KafkaSource(settings), make_sink(settings)


def settle_heap() -> None:
    """Move everything alive after start-up (modules, clients) out of the cyclic GC's way.

    The scoring loop allocates a few objects per record, so generation-2 collections run every
    few seconds; each walked the ~1M objects that numpy, scikit-learn and numba leave behind at
    import. ``gc.freeze`` parks them in the permanent generation (they live as long as the
    process anyway): measured +6-9 % events/s for `stockwatch consume` (README § Benchmarks).
    """
    gc.collect()
    gc.freeze()


def _install_signal_handlers(service: ScoringService) -> None:
    received: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        if received:
            os._exit(128 + signum)  # second signal: leave now, without cleanup
        received.append(signum)
        log.info("%s received: finishing the current batch, then stopping", signal.Signals(signum).name)
        service.request_stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def cmd_consume(args: argparse.Namespace, settings: Settings) -> int:
    """Run the scorer until a signal, ``--max-events`` or ``--timeout``."""
    log.info(
        "consume: %s -> %s (dlq %s), group %s, delivery %s, models in %s",
        settings.input_topic,
        settings.anomaly_topic,
        settings.dlq_topic,
        settings.group_id,
        settings.delivery,
        settings.model_dir,
    )
    from consumer.health import HealthServer

    service = build_service(settings)
    server = None
    if settings.http_port:
        server = HealthServer(
            service.health, service.metrics, host=settings.http_host, port=settings.http_port
        )
        server.start()
    _install_signal_handlers(service)
    settle_heap()
    try:
        service.run(max_events=args.max_events, timeout=args.timeout)
    finally:
        if server is not None:
            server.stop()
    return 0
