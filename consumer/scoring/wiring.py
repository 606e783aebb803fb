"""Wires `stockwatch consume` from settings: model store, watcher, transport, metrics, health."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

from config import Settings
from consumer.scoring.batch import BatchConfig
from consumer.scoring.health import HealthState
from consumer.scoring.loop import ScoringService
from consumer.scoring.metrics import ConsumerMetrics
from consumer.scoring.model_watcher import ModelWatcher
from consumer.stores import store_from_settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from consumer.ports import Audit, Sink, Source

__all__ = ["build_service", "settle_heap"]


def build_service(
    settings: Settings, *, registry: CollectorRegistry | None = None, health: HealthState | None = None
) -> ScoringService:
    """Wire the service from settings (connects to Kafka; the caller runs and stops it)."""
    from consumer.adapters.kafka import StatusListener, ensure_topics
    from consumer.scoring.health import HealthState
    from consumer.scoring.loop import ScoringService

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
        from consumer.adapters.mongo import AnomalyAudit

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
        stall_after_s=settings.stall_after_s,
    )


def _transport(settings: Settings) -> tuple[Source, Sink]:
    """The input and output adapters of ``settings.kafka_client``."""
    if settings.kafka_client == "confluent-kafka":
        try:
            from consumer.adapters.confluent import ConfluentSource, make_confluent_sink
        except ImportError as exc:
            if exc.name != "confluent_kafka":
                raise
            raise SystemExit(
                "STOCKWATCH_KAFKA_CLIENT=confluent-kafka needs confluent-kafka: "
                "pip install 'stockwatch[confluent]'"
            ) from exc
        return ConfluentSource(settings), make_confluent_sink(settings)
    from consumer.adapters.kafka import KafkaSource, make_sink

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
