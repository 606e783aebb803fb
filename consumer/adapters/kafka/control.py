"""Kafka for the retrain worker and `stockwatch ctl`: JSON publisher, control source, status tail."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from consumer.adapters.kafka.bounded_codecs import poll_skipping, skip_past
from consumer.adapters.kafka.connect import Broker, address, client_kwargs
from consumer.adapters.kafka.topics import client_timeouts, ensure_topics, json_objects, quiet_kafka_logs
from consumer.adapters.kafka.unread_batches import UnreadBatchError
from consumer.ports import KafkaUnavailableError

log = logging.getLogger(__name__)


class JsonPublisher:
    """Sends JSON objects and waits for the broker's acknowledgement of each batch (acks=all)."""

    def __init__(
        self, broker: Broker, *, client_id: str = "stockwatch-worker", timeout_s: float = 15.0
    ) -> None:
        self._timeout_s = timeout_s
        try:
            with quiet_kafka_logs():
                self._producer = KafkaProducer(
                    **client_kwargs(
                        broker,
                        KafkaProducer,
                        client_id=client_id,
                        acks="all",
                        max_block_ms=int(timeout_s * 1000),
                        **client_timeouts(timeout_s),
                    )
                )
        except KafkaError as exc:
            raise KafkaUnavailableError(
                f"cannot connect a producer to Kafka at {address(broker)} (STOCKWATCH_KAFKA_BOOTSTRAP): "
                f"{type(exc).__name__}"
            ) from exc

    def publish(
        self,
        topic: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        key: bytes | None = None,
        key_field: str | None = None,
        partition: int | None = None,
    ) -> None:
        """Send every message to ``topic`` (keyed by ``key`` or ``str(message[key_field])``), wait for acks."""
        records = [
            (
                str(m[key_field]).encode() if key_field else key,
                orjson.dumps(m, option=orjson.OPT_SERIALIZE_NUMPY),
            )
            for m in messages
        ]
        self.publish_bytes(topic, records, partition=partition)

    def publish_bytes(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes]], *, partition: int | None = None
    ) -> None:
        """Send ``(key, value)`` records as they are (e.g. a signed command), wait for acks."""
        try:
            futures = [
                self._producer.send(topic, value=value, key=key, partition=partition)
                for key, value in records
            ]
            self._producer.flush(timeout=self._timeout_s)
            for future in futures:
                future.get(timeout=self._timeout_s)
        except KafkaError as exc:
            raise KafkaUnavailableError(f"publishing {len(records)} messages to {topic}: {exc!r}") from exc

    def close(self) -> None:
        """Flush and close."""
        self._producer.close(timeout=self._timeout_s)


class ControlSource:
    """Reads raw records (control commands, feedback) as a group member (one worker handles each)."""

    def __init__(
        self,
        broker: Broker,
        topic: str,
        *,
        group_id: str,
        metadata_wait_s: float = 15.0,
        client_id: str = "stockwatch-retrain-worker",
    ) -> None:
        self.topic = topic
        try:
            self._consumer = self._connect(broker, topic, group_id, metadata_wait_s, client_id)
        except KafkaError as exc:
            raise KafkaUnavailableError(f"cannot read {topic} from {address(broker)}: {exc!r}") from exc

    @staticmethod
    def _connect(broker: Broker, topic: str, group_id: str, metadata_wait_s: float, client_id: str) -> Any:
        consumer = KafkaConsumer(
            **client_kwargs(
                broker,
                KafkaConsumer,
                client_id=client_id,
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                metadata_max_age_ms=10_000,  # a topic unknown at join time is found within 10 s
            )
        )
        # Join only once the topic's partitions are known: a member that joins before that gets
        # an empty assignment and waits for the next metadata refresh.
        deadline = time.monotonic() + metadata_wait_s
        while not consumer.partitions_for_topic(topic) and time.monotonic() < deadline:
            time.sleep(0.2)  # partitions_for_topic asks the broker for the topic's metadata
        consumer.subscribe([topic])
        return consumer

    def poll(self, timeout_s: float) -> list[tuple[int, int, bytes | None]]:
        """``(partition, offset, value)`` of the records received within ``timeout_s``, in order.

        A compressed batch over ``max_decompressed_batch_bytes``, or one holding a record that cannot
        be parsed, is skipped (ERROR) and comes back as one ``(partition, last offset, None)``:
        handled like a tombstone, its offset committed.
        """
        try:
            polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        except UnreadBatchError as exc:
            _, partition, _, last = skip_past(self._consumer, exc)
            return [(partition, last, None)]
        except KafkaError as exc:
            raise KafkaUnavailableError(f"polling {self.topic}: {exc!r}") from exc
        return [(r.partition, r.offset, r.value) for recs in polled.values() for r in recs]

    def assignment(self) -> set[int]:
        """The control-topic partitions this member holds right now."""
        return {tp.partition for tp in self._consumer.assignment()}

    def commit(self, partition: int, offset: int) -> None:
        """Commit ``offset`` of ``partition`` as handled (the group resumes after it), synchronously."""
        position = OffsetAndMetadata(offset + 1, "", -1)
        try:
            self._consumer.commit({TopicPartition(self.topic, partition): position})
        except KafkaError as exc:
            raise KafkaUnavailableError(f"committing {self.topic}: {exc!r}") from exc

    def close(self) -> None:
        """Leave the group."""
        self._consumer.close(autocommit=False)


class GroupFeed(ControlSource):
    """A :class:`ControlSource` that can also pause its partitions and stay in the group (notify)."""

    def pause_all(self) -> None:
        """Stop fetching from every assigned partition (polls keep the membership alive)."""
        try:
            self._consumer.pause(*self._consumer.assignment())
        except KafkaError as exc:
            raise KafkaUnavailableError(f"pausing {self.topic}: {exc!r}") from exc

    def resume_all(self) -> None:
        """Fetch again from every assigned partition."""
        try:
            self._consumer.resume(*self._consumer.assignment())
        except KafkaError as exc:
            raise KafkaUnavailableError(f"resuming {self.topic}: {exc!r}") from exc


class StatusTail:
    """Reads the status topic from *now* on (no group); ``start()`` pins the end offsets first.

    ``timeout_s`` bounds the bootstrap and every request of its client (``stockwatch ctl --timeout``).
    """

    def __init__(self, broker: Broker, topic: str, *, timeout_s: float = 30.0) -> None:
        self.topic = topic
        self._broker = broker
        try:
            with quiet_kafka_logs():
                self._consumer = KafkaConsumer(
                    **client_kwargs(
                        broker,
                        KafkaConsumer,
                        client_id="stockwatch-ctl",
                        group_id=None,
                        enable_auto_commit=False,
                        **client_timeouts(timeout_s),
                    )
                )
        except KafkaError as exc:
            raise KafkaUnavailableError(
                f"cannot read {topic} from Kafka at {address(broker)} (STOCKWATCH_KAFKA_BOOTSTRAP): "
                f"{type(exc).__name__}"
            ) from exc

    def start(self, *, create: bool = True) -> None:
        """Assign every partition and resolve the end offsets, so nothing published later is missed.

        ``create``: create the topic when it is missing (``stockwatch ctl`` passes False).
        """
        try:
            partitions = self._consumer.partitions_for_topic(self.topic)
            if not partitions and not create:
                raise KafkaUnavailableError(f"topic {self.topic} does not exist")
            if not partitions:
                ensure_topics(self._broker, [self.topic])
                self._consumer.poll(timeout_ms=100)
                partitions = self._consumer.partitions_for_topic(self.topic) or {0}
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            self._consumer.assign(tps)
            ends = self._consumer.end_offsets(tps)
            for tp in tps:
                self._consumer.seek(tp, ends[tp])
        except KafkaError as exc:
            raise KafkaUnavailableError(f"reading {self.topic}: {exc!r}") from exc

    def poll(self, timeout_s: float) -> list[dict[str, Any]]:
        """JSON objects received within ``timeout_s`` (anything else is skipped)."""
        try:
            polled = poll_skipping(self._consumer, int(timeout_s * 1000))
        except KafkaError as exc:
            raise KafkaUnavailableError(f"polling {self.topic}: {exc!r}") from exc
        return json_objects(polled)

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close(autocommit=False)


def ensure_worker_topics(broker: Broker, topics: Iterable[str], *, replication_factor: int = 1) -> list[str]:
    """:func:`ensure_topics` for the retrain worker and ctl; broker errors become KafkaUnavailableError."""
    try:
        return ensure_topics(broker, topics, replication_factor=replication_factor)
    except KafkaError as exc:
        raise KafkaUnavailableError(f"cannot reach the broker at {address(broker)}: {exc!r}") from exc
