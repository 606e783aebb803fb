"""Kafka for the retrain worker and `stockwatch ctl`: JSON publisher, control source, status tail."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from consumer.adapters.kafka.topics import ensure_topics, json_objects
from consumer.ports import KafkaUnavailableError

log = logging.getLogger(__name__)


class JsonPublisher:
    """Sends JSON objects and waits for the broker's acknowledgement of each batch (acks=all)."""

    def __init__(
        self, bootstrap: str, *, client_id: str = "stockwatch-worker", timeout_s: float = 15.0
    ) -> None:
        self._timeout_s = timeout_s
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap,
                client_id=client_id,
                acks="all",
                max_block_ms=int(timeout_s * 1000),
                request_timeout_ms=int(timeout_s * 1000),
            )
        except KafkaError as exc:
            raise KafkaUnavailableError(f"cannot connect a producer to {bootstrap}: {exc!r}") from exc

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
        bootstrap: str,
        topic: str,
        *,
        group_id: str,
        metadata_wait_s: float = 15.0,
        client_id: str = "stockwatch-retrain-worker",
    ) -> None:
        self.topic = topic
        try:
            self._consumer = self._connect(bootstrap, topic, group_id, metadata_wait_s, client_id)
        except KafkaError as exc:
            raise KafkaUnavailableError(f"cannot read {topic} from {bootstrap}: {exc!r}") from exc

    @staticmethod
    def _connect(bootstrap: str, topic: str, group_id: str, metadata_wait_s: float, client_id: str) -> Any:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=10_000,  # a topic unknown at join time is found within 10 s
        )
        # Join only once the topic's partitions are known: a member that joins before that gets
        # an empty assignment and waits for the next metadata refresh.
        deadline = time.monotonic() + metadata_wait_s
        while not consumer.partitions_for_topic(topic) and time.monotonic() < deadline:
            time.sleep(0.2)  # partitions_for_topic asks the broker for the topic's metadata
        consumer.subscribe([topic])
        return consumer

    def poll(self, timeout_s: float) -> list[tuple[int, int, bytes | None]]:
        """``(partition, offset, value)`` of the records received within ``timeout_s``, in order."""
        try:
            polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
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
    """Reads the status topic from *now* on (no group); ``start()`` pins the end offsets first."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=bootstrap,
                client_id="stockwatch-ctl",
                group_id=None,
                enable_auto_commit=False,
            )
        except KafkaError as exc:
            raise KafkaUnavailableError(f"cannot read {topic} from {bootstrap}: {exc!r}") from exc

    def start(self, timeout_s: float = 10.0) -> None:
        """Assign every partition and resolve the end offsets, so nothing published later is missed."""
        try:
            partitions = self._consumer.partitions_for_topic(self.topic)
            if not partitions:
                ensure_topics(self._consumer.config["bootstrap_servers"], [self.topic])
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
            polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        except KafkaError as exc:
            raise KafkaUnavailableError(f"polling {self.topic}: {exc!r}") from exc
        return json_objects(polled)

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close(autocommit=False)


def ensure_worker_topics(bootstrap: str, topics: Iterable[str], *, replication_factor: int = 1) -> list[str]:
    """:func:`ensure_topics` for the retrain worker and ctl; broker errors become KafkaUnavailableError."""
    try:
        return ensure_topics(bootstrap, topics, replication_factor=replication_factor)
    except KafkaError as exc:
        raise KafkaUnavailableError(f"cannot reach the broker at {bootstrap}: {exc!r}") from exc
