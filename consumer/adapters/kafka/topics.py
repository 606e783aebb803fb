"""Consumers of the status topic (model announcements) and topic creation."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    KafkaError,
    TopicAlreadyExistsError,
)

from config.kafka import KafkaSettings
from consumer.adapters.kafka.bounded_codecs import install, poll_skipping
from consumer.adapters.kafka.client_config import kafka_python_config
from consumer.adapters.kafka.connect import Broker, address, client_kwargs
from consumer.ports import KafkaUnavailableError
from consumer.wire.control import message_is_signed

log = logging.getLogger(__name__)


def json_objects(polled: Mapping[Any, Sequence[Any]]) -> list[dict[str, Any]]:
    """The JSON-object values of polled records, in order; anything else is skipped (logged at DEBUG)."""
    out: list[dict[str, Any]] = []
    for records in polled.values():
        for record in records:
            try:
                msg = orjson.loads(record.value) if record.value else None
            except orjson.JSONDecodeError:
                msg = None
            if isinstance(msg, dict):
                out.append(msg)
            else:
                log.debug(
                    "ignoring a status message that is not a JSON object",
                    extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
                )
    return out


class StatusListener:
    """Reads verified `model_published` announcements from the status topic (no group: every
    instance hears all).

    Only announcements signed with the control key count; unsigned or forged ones are dropped,
    counted in :attr:`forged` and logged. Without a control key nothing can be verified: the
    topic is not read at all and new models are found by the store poll alone.
    """

    def __init__(self, kafka: KafkaSettings, *, key: bytes | None) -> None:
        self.topic = kafka.topics.status
        self._key = key
        self.forged = 0
        self._assigned = False
        self._consumer: KafkaConsumer | None = None
        if self._key is None:
            log.info(
                "no control key: model_published announcements cannot be verified and are ignored; "
                "new models are found by polling the store every model_poll_interval_s"
            )
            return
        install(kafka.decompressed_batch_cap)  # a compressed bomb on the status topic raises, is skipped
        config = kafka_python_config(kafka.client_config(client_id="stockwatch-consume-status"))
        self._consumer = KafkaConsumer(
            **{**config, "group_id": None, "enable_auto_commit": False, "isolation_level": "read_committed"}
        )

    def _assign(self, consumer: KafkaConsumer) -> bool:
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            return False
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_end(*tps)  # only announcements made from now on matter
        self._assigned = True
        return True

    def poll(self, timeout_s: float) -> list[dict[str, Any]]:
        """Verified ``model_published`` announcements received within ``timeout_s``."""
        consumer, key = self._consumer, self._key
        if consumer is None or key is None:
            time.sleep(timeout_s)  # the watcher paces its store poll on this call
            return []
        if not self._assigned and not self._assign(consumer):
            consumer.poll(timeout_ms=int(timeout_s * 1000))  # keeps metadata fresh; nothing assigned
            return []
        published = [
            m
            for m in json_objects(poll_skipping(consumer, int(timeout_s * 1000)))
            if m.get("type") == "model_published"
        ]
        verified = [m for m in published if message_is_signed(m, key)]
        if len(verified) < len(published):
            self.forged += len(published) - len(verified)
            log.warning(
                "ignored %d model_published announcement(s) on %s not signed with the control key "
                "(%d so far)",
                len(published) - len(verified),
                self.topic,
                self.forged,
            )
        return verified

    def close(self) -> None:
        """Close the listener's consumer."""
        if self._consumer is not None:
            self._consumer.close(autocommit=False)


def ensure_topics(
    broker: str | KafkaSettings,
    topics: Iterable[str],
    *,
    partitions: int = 1,
    replication_factor: int = 1,
    partitions_like: str | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created.

    ``partitions=0`` gives them as many partitions as the existing topic ``partitions_like`` (the
    input: every input partition's outputs can be written and read in parallel), or 1 when that
    topic does not exist yet.
    """
    if isinstance(broker, str):
        admin = KafkaAdminClient(bootstrap_servers=broker, client_id="stockwatch-admin")
    else:
        admin = KafkaAdminClient(
            **kafka_python_config(broker.client_config(client_id="stockwatch-admin"), KafkaAdminClient)
        )
    try:
        existing = set(admin.list_topics())
        missing = sorted({t for t in topics if t and t not in existing})
        if not missing:
            return []
        count = partitions or _partition_count(
            admin, partitions_like if partitions_like in existing else None
        )
        created = []
        for topic in missing:
            spec = {"num_partitions": count, "replication_factor": replication_factor}
            try:
                admin.create_topics({topic: spec}, wait_for_metadata=True)
                created.append(topic)
            except TopicAlreadyExistsError:
                pass  # another instance was quicker
            except (InvalidReplicationFactorError, InvalidPartitionsError) as exc:
                raise ValueError(
                    f"cannot create topic {topic} with {count} partitions and replication factor "
                    f"{replication_factor} (STOCKWATCH_OUTPUT_PARTITIONS, STOCKWATCH_REPLICATION_FACTOR): "
                    f"{type(exc).__name__}: {exc.description or exc}"
                ) from exc
        if created:
            log.info(
                "created topics %s (%d partitions, replication factor %d)",
                ", ".join(created),
                count,
                replication_factor,
            )
        return created
    finally:
        admin.close()


@contextlib.contextmanager
def quiet_kafka_logs() -> Iterator[None]:
    """Silence kafka-python's own per-attempt ERROR/WARNING lines; the caller reports the outcome once."""
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        kafka_log.setLevel(level)


MAX_REQUEST_TIMEOUT_MS = 60_000


def client_timeouts(timeout_s: float) -> dict[str, int]:
    """kafka-python's bootstrap and request timeouts for a client that must give up within ``timeout_s``."""
    ms = max(500, int(timeout_s * 1000))
    # one request never needs more than a minute; above 120 s kafka-python refuses the producer's config
    return {"bootstrap_timeout_ms": ms, "request_timeout_ms": min(MAX_REQUEST_TIMEOUT_MS, max(1000, ms))}


def existing_topics(broker: Broker, *, timeout_s: float) -> set[str]:
    """The broker's topics, or :class:`KafkaUnavailableError` within about ``timeout_s`` (one line, quiet)."""
    started = time.monotonic()
    with quiet_kafka_logs():
        try:
            admin = KafkaAdminClient(
                **client_kwargs(
                    broker, KafkaAdminClient, client_id="stockwatch-probe", **client_timeouts(timeout_s)
                )
            )
            try:
                return set(admin.list_topics())
            finally:
                admin.close()
        except KafkaError as exc:
            waited = time.monotonic() - started
            raise KafkaUnavailableError(
                f"cannot reach Kafka at {address(broker)} (STOCKWATCH_KAFKA_BOOTSTRAP) within {waited:.1f}s: "
                f"{type(exc).__name__}"
            ) from None


def _partition_count(admin: KafkaAdminClient, topic: str | None) -> int:
    """Partitions of the existing ``topic``; 1 without one."""
    if topic is None:
        return 1
    described = admin.describe_topics([topic])
    return max(1, len(described[0].get("partitions") or ())) if described else 1
