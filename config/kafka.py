"""The Kafka slice of the settings, and what both Kafka transports derive from it (client-neutral).

The two transports of `stockwatch consume` (kafka-python and confluent-kafka) take the same
knobs; the values they hand their client are derived here, once, under the Java client's
property names (``bootstrap.servers``, ``fetch.max.wait.ms`` …; the security ones under
librdkafka's, see :mod:`config.kafka_security`). Each transport only translates those names into
its client's spelling. Every client of either transport starts from :meth:`KafkaSettings.client_config`.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any, Literal

from pydantic import Field

from config.groups import Slice
from config.kafka_security import KafkaSecurity

__all__ = [
    "FETCH_HEADROOM_BYTES",
    "PRODUCER_MAX_REQUEST_BYTES",
    "RECONNECT_BACKOFF_MAX_MS",
    "RESERVED_PROPERTIES",
    "Delivery",
    "KafkaClient",
    "KafkaSettings",
    "OffsetReset",
    "TopicSettings",
]

Delivery = Literal["at-least-once", "exactly-once"]
KafkaClient = Literal["kafka-python", "confluent-kafka"]
OffsetReset = Literal["earliest", "latest"]

FETCH_HEADROOM_BYTES = 65_536  # a record of max_message_bytes plus its batch and record headers
PRODUCER_MAX_REQUEST_BYTES = 16 * 1024 * 1024  # dead letters carry the original bytes plus headers
_DELIVERY_TIMEOUT_CAP_MS = 120_000  # kafka-python's default delivery timeout
# Properties the derived configs set (their settings own them; kafka_client_properties may not).
RESERVED_PROPERTIES = frozenset(
    {
        "bootstrap.servers", "client.id", "group.id", "enable.auto.commit", "enable.auto.offset.store",
        "auto.offset.reset", "isolation.level", "max.poll.records", "max.poll.interval.ms",
        "session.timeout.ms", "heartbeat.interval.ms", "fetch.max.wait.ms", "fetch.wait.max.ms",
        "max.partition.fetch.bytes", "acks", "enable.idempotence", "linger.ms", "batch.size",
        "max.request.size", "message.max.bytes", "message.timeout.ms", "transactional.id",
        "transaction.timeout.ms", "security.protocol", "sasl.mechanism", "sasl.mechanisms",
        "sasl.username", "sasl.password", "ssl.ca.location", "ssl.certificate.location",
        "ssl.key.location", "ssl.endpoint.identification.algorithm",
    }
)  # fmt: skip

# A restarted broker is found again within this (kafka-python's default cap is 30 s: 20-29 s outages).
RECONNECT_BACKOFF_MAX_MS = 1000


class TopicSettings(Slice):
    """The topics of the services (flat names ``<what>_topic``)."""

    input: str = Field(validation_alias="input_topic")
    anomalies: str = Field(validation_alias="anomaly_topic")
    dlq: str = Field(validation_alias="dlq_topic")
    decisions: str | None = Field(validation_alias="decisions_topic")
    control: str = Field(validation_alias="control_topic")
    status: str = Field(validation_alias="status_topic")
    feedback: str = Field(validation_alias="feedback_topic")
    output_partitions: int  # of the output topics StockWatch creates; 0 = as many as the input topic
    replication_factor: int  # of every topic StockWatch creates


class KafkaSettings(Slice):
    """Broker, topics, client library and the consumer/producer knobs of `stockwatch consume`."""

    bootstrap: str = Field(validation_alias="kafka_bootstrap")
    bootstrap_timeout_s: float = Field(validation_alias="kafka_bootstrap_timeout_s")
    client: KafkaClient = Field(validation_alias="kafka_client")
    topics: TopicSettings
    security: KafkaSecurity
    group_id: str
    delivery: Delivery
    auto_offset_reset: OffsetReset
    max_poll_records: int
    poll_timeout_ms: int
    max_poll_interval_ms: int
    session_timeout_ms: int
    max_partition_fetch_bytes: int
    max_message_bytes: int
    max_decompressed_batch_bytes: int
    producer_linger_ms: int
    producer_batch_size: int
    transactional_id: str | None
    transaction_timeout_ms: int
    group_instance_id: str | None

    @property
    def exactly_once(self) -> bool:
        """Outputs and consumed offsets commit in one transaction."""
        return self.delivery == "exactly-once"

    @property
    def heartbeat_interval_ms(self) -> int:
        """A tenth of the session timeout (at least 1 s): ten missed heartbeats before eviction."""
        return max(1000, self.session_timeout_ms // 10)

    @property
    def fetch_max_wait_ms(self) -> int:
        """How long the broker holds a fetch for data: the poll timeout, within 10-500 ms."""
        return min(500, max(10, self.poll_timeout_ms))

    @property
    def partition_fetch_bytes(self) -> int:
        """Fetch size per partition, raised so that one record of ``max_message_bytes`` always fits."""
        return max(self.max_partition_fetch_bytes, self.max_message_bytes + FETCH_HEADROOM_BYTES)

    @property
    def decompressed_batch_cap(self) -> int:
        """The most one compressed record batch may inflate to: one record of max_message_bytes fits."""
        return max(self.max_decompressed_batch_bytes, self.max_message_bytes + FETCH_HEADROOM_BYTES)

    @property
    def producer_max_request_bytes(self) -> int:
        """Largest produce request: a dead letter holds a whole input record plus headers."""
        return max(PRODUCER_MAX_REQUEST_BYTES, 2 * self.max_message_bytes)

    @property
    def delivery_timeout_ms(self) -> int:
        """An unacknowledged output fails after this long: well before the member is evicted for
        not polling, and never after the transaction times out."""
        return min(_DELIVERY_TIMEOUT_CAP_MS, self.max_poll_interval_ms // 2, self.transaction_timeout_ms)

    def transactional_id_or_default(self, hostname: str | None = None) -> str:
        """``transactional_id``; else ``<group_id>.<group_instance_id>`` for a static member; else one
        unique to this process, ``<group_id>.<hostname>.<pid>.<random>``.

        Never shared by two instances (a shared id fences one of them for ever). Safe without a
        stable id (KIP-447): the consumed offsets go with the consumer's group metadata, so the
        broker fences a stale member by its generation; only a crashed instance's open transaction
        then waits for ``transaction_timeout_ms`` instead of being aborted by its successor's
        ``init_transactions``.
        """
        if self.transactional_id:
            return self.transactional_id
        if self.group_instance_id:
            return f"{self.group_id}.{self.group_instance_id}"
        return f"{self.group_id}.{hostname or socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"

    def client_config(self, *, client_id: str) -> dict[str, Any]:
        """What every client gets (consumer, producer, admin, tools): the broker, the client id,
        the security properties and the user's ``kafka_client_properties``."""
        return {
            "bootstrap.servers": self.bootstrap,
            "client.id": client_id,
            **self.security.config(),
            **self.security.client_properties,
        }

    def consumer_config(self, *, client_id: str) -> dict[str, Any]:
        """The input side's consumer, under the Java client's property names."""
        return {
            **self.client_config(client_id=client_id),
            "group.id": self.group_id,
            "enable.auto.commit": False,  # offsets are committed explicitly, after publishing
            "auto.offset.reset": self.auto_offset_reset,
            "isolation.level": "read_committed" if self.exactly_once else "read_uncommitted",
            "max.poll.records": self.max_poll_records,
            "max.poll.interval.ms": self.max_poll_interval_ms,
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
            "fetch.max.wait.ms": self.fetch_max_wait_ms,
            "max.partition.fetch.bytes": self.partition_fetch_bytes,
            "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
            **({"group.instance.id": self.group_instance_id} if self.group_instance_id else {}),
        }

    def producer_config(self, *, client_id: str) -> dict[str, Any]:
        """The output side's idempotent producer (acks=all), under the Java client's names."""
        return {
            **self.client_config(client_id=client_id),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": self.producer_linger_ms,
            "batch.size": self.producer_batch_size,
            "max.request.size": self.producer_max_request_bytes,
            "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
        }

    def transactional_producer_config(self, *, client_id: str) -> dict[str, Any]:
        """:meth:`producer_config` plus the transaction's id and timeout (exactly-once)."""
        return {
            **self.producer_config(client_id=client_id),
            "transactional.id": self.transactional_id_or_default(),
            "transaction.timeout.ms": self.transaction_timeout_ms,
        }
