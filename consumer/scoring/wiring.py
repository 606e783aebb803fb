"""Wires `stockwatch consume` from settings: model store, watcher, transport, metrics, health."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from pydantic import SecretStr

from config import KafkaSettings, Settings
from config.groups import MongoSettings
from consumer.scoring.batch import BatchConfig
from consumer.scoring.change_batch import ChangeContext
from consumer.scoring.episode_batch import EpisodeContext
from consumer.scoring.episodes import EpisodePolicy
from consumer.scoring.future_time import FutureSafeSeeds
from consumer.scoring.health import HealthState
from consumer.scoring.loop import ScoringService
from consumer.scoring.metrics import ConsumerMetrics
from consumer.scoring.model_watcher import ModelWatcher
from consumer.scoring.state.cache import ChangelogCache
from consumer.scoring.state.changelog import changelog_topic
from consumer.scoring.state.seeds import BackgroundSeeds, LookupSeeds, Seeds
from consumer.scoring.state.store import StateStore
from consumer.scoring.suppression_cache import SuppressionCache
from consumer.stores import store_from_settings
from consumer.wire.context import EventContext

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from consumer.ports import Audit, Sink, Source, StateChangelog

__all__ = ["build_service", "build_state", "ensure_output_topics", "settle_heap"]


def build_service(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    health: HealthState | None = None,
    watcher: ModelWatcher | None = None,
) -> ScoringService:
    """Wire the service from settings (connects to Kafka; the caller runs and stops it).

    ``watcher`` replaces the model store's watcher (a test hands in a model trained in process).
    """
    from consumer.adapters.kafka import StatusListener
    from consumer.scoring.health import HealthState
    from consumer.scoring.loop import ScoringService

    kafka, topics, scoring = settings.kafka, settings.kafka.topics, settings.scoring
    metrics = ConsumerMetrics(registry)
    store = store_from_settings(settings)
    if scoring.create_missing_topics:
        ensure_output_topics(kafka)
    watcher = watcher or ModelWatcher(
        store,
        interval_s=settings.models.poll_interval_s,
        announcements=StatusListener(kafka, key=_key_bytes(settings.control.key)),
        on_refusal=lambda reason: metrics.model_refusals.labels(reason).inc(),
    )
    audit: Audit | None = None
    if scoring.audit_anomalies:
        from consumer.adapters.mongo import AnomalyAudit

        audit = AnomalyAudit.from_settings(settings.mongo)
    source, sink = _transport(kafka, scoring.commit_interval_ms / 1000)
    return ScoringService(
        source=source,
        sink=sink,
        watcher=watcher,
        config=BatchConfig(
            anomaly_topic=topics.anomalies,
            dlq_topic=topics.dlq,
            decisions_topic=topics.decisions,
            max_message_bytes=kafka.max_message_bytes,
            group_id=kafka.group_id,
            context=EventContext.from_settings(settings.context, settings.models.dir),
            future_skew_s=scoring.future_skew_s,
        ),
        metrics=metrics,
        health=health if health is not None else HealthState(stale_s=scoring.health_stale_s),
        audit=audit,
        poll_timeout_ms=kafka.poll_timeout_ms,
        max_poll_records=kafka.max_poll_records,
        retry_backoff_s=scoring.retry_backoff_s,
        commit_interval_s=scoring.commit_interval_ms / 1000,
        exactly_once=kafka.exactly_once,
        stall_after_s=scoring.stall_after_s,
        # a rebalance normally completes within seconds; a member out of its group this long is not
        unstable_after_s=max(10.0, kafka.session_timeout_ms / 1000),
        session_timeout_s=kafka.session_timeout_ms / 1000,
        state=build_state(settings, metrics=metrics),
    )


def ensure_output_topics(kafka: KafkaSettings) -> list[str]:
    """Create the missing topics `consume` writes: anomalies, DLQ and decisions with the input's
    partition count (or ``output_partitions``), the status topic with one (a broadcast channel)."""
    from consumer.adapters.kafka import ensure_topics

    topics = kafka.topics
    outputs = [topics.anomalies, topics.dlq, topics.decisions or ""]
    rf = topics.replication_factor
    created = ensure_topics(
        kafka,
        outputs,
        partitions=topics.output_partitions,
        replication_factor=rf,
        partitions_like=topics.input,
    )
    return created + ensure_topics(kafka, [topics.status], replication_factor=rf)


def build_state(settings: Settings, *, metrics: ConsumerMetrics | None = None) -> ChangeContext:
    """The per-item state of the `default` detector: changelog store, seed and alert episodes (no I/O
    until used)."""
    kafka, scoring = settings.kafka, settings.scoring
    topic = changelog_topic(
        scoring.state_changelog_topic, group_id=kafka.group_id, input_topic=kafka.topics.input
    )
    seeds: Seeds | None = None
    if scoring.state_seed == "lookup":
        from consumer.adapters.mongo import WorkerMongo

        seeds = LookupSeeds(WorkerMongo.from_settings(settings.mongo))
    elif scoring.state_seed == "snapshot":
        mongo, batch_size = settings.mongo, settings.retrain.batch_size
        seeds = BackgroundSeeds(lambda group: _inventory(mongo, batch_size, group))
    if seeds is not None:
        seeds = FutureSafeSeeds(seeds, scoring.future_skew_s)
    store = StateStore(_changelog(kafka, topic))
    if not kafka.exactly_once:  # exactly-once: each batch's records join its transaction
        store.cache = ChangelogCache(topic)
    return ChangeContext(store, topic, seeds, _episodes(settings, metrics))


def _episodes(settings: Settings, metrics: ConsumerMetrics | None) -> EpisodeContext | None:
    """``alert_mode = "episodes"``: the policy and the suppressions, read from Mongo in the background."""
    scoring = settings.scoring
    if scoring.alert_mode != "episodes":
        return None
    mongo = settings.mongo
    clients: list[Any] = []

    def load() -> list[dict[str, Any]]:
        if not clients:
            from consumer.adapters.mongo import WorkerMongo

            clients.append(WorkerMongo.from_settings(mongo))
        docs: list[dict[str, Any]] = clients[0].suppressions()
        return docs

    def close() -> None:  # its monitor threads would outlive the service
        while clients:
            clients.pop().close()

    cache = SuppressionCache(
        load,
        close=close,
        refresh_s=scoring.suppressions_refresh_s,
        on_refresh=metrics.suppressions_loaded if metrics is not None else lambda _a, _s: None,
    )
    policy = EpisodePolicy(resolve_after=scoring.resolve_after, renotify_after_s=scoring.renotify_after_s)
    return EpisodeContext(policy, cache)


def _inventory(mongo: MongoSettings, batch_size: int, group: str) -> Iterator[dict[str, Any]]:
    """The inventory with the peer-group field, on a client of its own (closed when read)."""
    from consumer.adapters.mongo import WorkerMongo

    client = WorkerMongo.from_settings(mongo)
    try:
        yield from client.iter_inventory(batch_size=batch_size, fields=(group, "occurred_at"))
    finally:
        client.close()


def _changelog(kafka: KafkaSettings, topic: str) -> StateChangelog:
    """The librdkafka reader when confluent-kafka is installed (a restore decodes every record:
    3.7x faster in C, bench/state.py), else kafka-python's."""
    from consumer.adapters.kafka import ChangelogPartitions, KafkaChangelog

    try:
        from consumer.adapters.confluent.changelog import ConfluentChangelog
    except ImportError as exc:
        if exc.name != "confluent_kafka":
            raise
        return KafkaChangelog(kafka, topic)

    return ConfluentChangelog(kafka, topic, ensure=ChangelogPartitions(kafka, topic))


def _transport(kafka: KafkaSettings, interval_s: float) -> tuple[Source, Sink]:
    """The input and output adapters of ``kafka.client`` (``interval_s``: the commit interval)."""
    if kafka.client == "confluent-kafka":
        try:
            from consumer.adapters.confluent import ConfluentSource, make_confluent_sink
        except ImportError as exc:
            if exc.name != "confluent_kafka":
                raise
            raise SystemExit(
                "STOCKWATCH_KAFKA_CLIENT=confluent-kafka needs confluent-kafka: "
                "pip install 'stockwatch[confluent]'"
            ) from exc
        return ConfluentSource(kafka), make_confluent_sink(kafka, interval_s=interval_s)
    from consumer.adapters.kafka import KafkaSource, make_sink

    return KafkaSource(kafka), make_sink(kafka, interval_s=interval_s)


GC_THRESHOLDS: Final = (20_000, 20, 10)  # young collection every 20k allocations (CPython's: 700, 10, 10)


def settle_heap() -> None:
    """Move everything alive after start-up (modules, clients) out of the cyclic GC's way.

    The scoring loop allocates a few objects per record, so generation-2 collections run every
    few seconds; each walked the ~1M objects that numpy, scikit-learn and numba leave behind at
    import. ``gc.freeze`` parks them in the permanent generation (they live as long as the
    process anyway), so the collector stops re-walking them (figures in README § Benchmarks).

    A poll batch allocates tens of thousands of short-lived objects, so the default threshold of
    700 ran ~100 young collections per batch, each walking what the batch still holds:
    :data:`GC_THRESHOLDS` runs one every few batches instead.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _key_bytes(key: SecretStr | None) -> bytes | None:
    return key.get_secret_value().encode() if key is not None else None
