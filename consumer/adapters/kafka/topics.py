"""Consumers of the status topic (model announcements) and topic creation."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import TopicAlreadyExistsError

from config.kafka import KafkaSettings

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
    """Reads `model_published` announcements from the status topic (no group: every instance hears all)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.topic = kafka.topics.status
        self._consumer = KafkaConsumer(
            bootstrap_servers=kafka.bootstrap,
            client_id="stockwatch-consume-status",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        self._assigned = False

    def _assign(self) -> bool:
        partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            return False
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        self._consumer.seek_to_end(*tps)  # only announcements made from now on matter
        self._assigned = True
        return True

    def poll(self, timeout_s: float) -> list[dict[str, Any]]:
        """Announcements (JSON objects) received within ``timeout_s``; malformed ones are skipped."""
        if not self._assigned and not self._assign():
            self._consumer.poll(timeout_ms=int(timeout_s * 1000))  # keeps metadata fresh; nothing assigned
            return []
        return json_objects(self._consumer.poll(timeout_ms=int(timeout_s * 1000)))

    def close(self) -> None:
        """Close the listener's consumer."""
        self._consumer.close(autocommit=False)


def ensure_topics(bootstrap: str, topics: Iterable[str], *, partitions: int = 1) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="stockwatch-admin")
    try:
        existing = set(admin.list_topics())
        missing = sorted({t for t in topics if t and t not in existing})
        created = []
        for topic in missing:
            try:
                admin.create_topics({topic: {"num_partitions": partitions}}, wait_for_metadata=True)
                created.append(topic)
            except TopicAlreadyExistsError:
                pass  # another instance was quicker
        if created:
            log.info("created topics %s", ", ".join(created))
        return created
    finally:
        admin.close()
