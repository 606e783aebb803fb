"""Tools for the demo and operators: a raw producer and a topic reader without a group."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from consumer.adapters.kafka.bounded_codecs import poll_skipping
from consumer.adapters.kafka.connect import Broker, client_kwargs

log = logging.getLogger(__name__)


class TopicTail:
    """Reads every partition of a topic from the beginning, without a group (for demos and tools)."""

    def __init__(self, broker: Broker, topic: str, *, read_committed: bool = False) -> None:
        self.topic = topic
        self._consumer = KafkaConsumer(
            **client_kwargs(
                broker,
                KafkaConsumer,
                client_id="stockwatch-tail",
                enable_auto_commit=False,
                isolation_level="read_committed" if read_committed else "read_uncommitted",
            )
        )
        partitions = self._consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)

    def poll(self, timeout_s: float) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
        """``(key, value, headers)`` of the records that arrived within ``timeout_s``."""
        polled = poll_skipping(self._consumer, int(timeout_s * 1000))
        return [(r.key, r.value, dict(r.headers or [])) for recs in polled.values() for r in recs]

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()


def publish_raw(broker: Broker, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Send ``(key, value)`` byte pairs to ``topic`` and wait for every acknowledgement."""
    producer = KafkaProducer(
        **client_kwargs(broker, KafkaProducer, client_id="stockwatch-publish", acks="all", linger_ms=5)
    )
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in records]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()
