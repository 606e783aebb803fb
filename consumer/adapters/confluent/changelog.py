"""The state changelog read back on librdkafka (records decoded in C: the restore's main cost).

The topic itself is created by :func:`consumer.adapters.kafka.ensure_changelog` (wiring calls it
through the kafka-python reader's ``ensure``); this reader only reads a partition to its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from config.kafka import KafkaSettings
from consumer.adapters.confluent.source import librdkafka_config
from consumer.ports import ClientPropertyError, KafkaUnavailableError

__all__ = ["ConfluentChangelog"]

_BATCH = 100_000
_RESTORE_TIMEOUT_S = 300.0


class ConfluentChangelog:
    """Reads one changelog partition from its beginning to its end offset at the time of the call."""

    def __init__(
        self, kafka: KafkaSettings, topic: str, *, ensure: Callable[[int], None] = lambda partition: None
    ) -> None:
        self.topic = topic
        self._ensure = ensure
        self._kafka = kafka
        self._client: Consumer | None = None  # created at the first restore
        self._admin: AdminClient | None = None  # created at the first truncation

    def _connect(self) -> Consumer:
        try:
            return Consumer(self._config())
        except (
            KafkaException
        ) as exc:  # a property value librdkafka refuses: a setting to fix, never an outage
            raise ClientPropertyError(str(exc.args[0] if exc.args else exc)) from exc

    def _config(self) -> dict[str, object]:
        kafka = self._kafka
        return {
            **librdkafka_config(kafka.client_config(client_id="stockwatch-consume-restore")),
            "group.id": f"{kafka.group_id}.restore",  # required by librdkafka; never joins nor commits
            "enable.auto.commit": False,
            "isolation.level": "read_committed",  # an aborted transaction's changes never count
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",  # records deleted mid-read: go on from the new start, never the end  # the end is known even when only markers follow the last record
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 32 * 1024 * 1024,
        }  # fmt: skip

    def read(
        self, partition: int, *, tick: Callable[[], None] = lambda: None
    ) -> tuple[list[bytes | None], list[bytes | None]]:
        """Keys and values of the partition, in order, up to the end offset seen at the start
        (``tick`` is called between fetches: the loop's liveness during a long restore)."""
        self._ensure(partition)
        low, end = self._watermarks(partition)
        consumer = self._consumer
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        try:
            if low >= end:  # empty, or every record deleted (truncation, a retention): nothing to read
                return keys, values
            consumer.assign(
                [TopicPartition(self.topic, partition, low)]
            )  # not BEGINNING: cached from a past read
            position, last_progress, at_end = low - 1, time.monotonic(), False
            while position + 1 < end and not at_end:
                tick()
                messages = consumer.consume(num_messages=_BATCH, timeout=0.5)
                if any(map(Message.error, messages)):  # rare (an event, not a record): skip those
                    at_end = any(_is_end(m) for m in messages)  # the log's end, markers included
                    messages = [m for m in messages if m.error() is None]
                keys.extend(map(Message.key, messages))  # C-level passes: no Python per record
                values.extend(map(Message.value, messages))
                if messages:
                    position = max(position, messages[-1].offset() or 0)
                    last_progress = time.monotonic()
                elif at_end:
                    break
                elif time.monotonic() - last_progress > _RESTORE_TIMEOUT_S:
                    raise KafkaUnavailableError(f"restore of {self.topic}[{partition}] made no progress")
                elif _past_end(consumer, self.topic, partition, end):
                    break  # transaction markers or compacted-away records at the end
        except KafkaException as exc:
            raise KafkaUnavailableError(f"could not read {self.topic}[{partition}]: {exc}") from exc
        finally:
            consumer.unassign()
        return keys, values

    @property
    def _consumer(self) -> Consumer:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _watermarks(self, partition: int) -> tuple[int, int]:
        """The partition's first and end offsets; a partition unknown to the client's metadata
        (added since it connected) is asked again by a new client: librdkafka kept the stale
        metadata for minutes, stalling the service."""
        tp = TopicPartition(self.topic, partition)
        for retry in (True, False):
            try:
                low, end = self._consumer.get_watermark_offsets(tp, timeout=10.0)
                return int(low), int(end)
            except KafkaException as exc:
                if not (retry and exc.args and exc.args[0].code() == KafkaError._UNKNOWN_PARTITION):
                    raise KafkaUnavailableError(f"could not read {self.topic}[{partition}]: {exc}") from exc
                client, self._client = self._client, None
                if client is not None:
                    client.close()
        raise AssertionError("unreachable")

    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(
                librdkafka_config(self._kafka.client_config(client_id="stockwatch-admin"))
            )
        return self._admin

    def end_offset(self, partition: int) -> int:
        """The partition's high watermark, a lower bound of the next record's offset (the admin
        client: called by the truncation thread, never with the restore reader)."""
        tp = TopicPartition(self.topic, partition)
        try:
            latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
            futures = self._admin_client().list_offsets({tp: latest}, request_timeout=10.0)
            return int(next(iter(futures.values())).result(timeout=15.0).offset)
        except Exception as exc:  # KafkaException or the future's timeout
            raise KafkaUnavailableError(
                f"could not read the end of {self.topic}[{partition}]: {exc!r}"
            ) from exc

    def truncate(self, partition: int, before: int) -> bool:
        """Delete the partition's records below ``before``; False when the topic's policy refuses."""
        futures = self._admin_client().delete_records(
            [TopicPartition(self.topic, partition, before)], request_timeout=10.0, operation_timeout=10.0
        )
        try:
            for future in futures.values():
                future.result(timeout=15.0)
        except KafkaException as exc:
            if exc.args and getattr(exc.args[0], "code", lambda: None)() == KafkaError.POLICY_VIOLATION:
                return False
            raise KafkaUnavailableError(f"could not truncate {self.topic}[{partition}]: {exc}") from exc
        except Exception as exc:  # a timeout of the future
            raise KafkaUnavailableError(f"could not truncate {self.topic}[{partition}]: {exc!r}") from exc
        return True

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._admin = None  # no close() in confluent-kafka: its threads end when it is collected


def _past_end(consumer: Consumer, topic: str, partition: int, end: int) -> bool:
    positions = consumer.position([TopicPartition(topic, partition)])
    return bool(positions) and positions[0].offset >= end


def _is_end(message: Message) -> bool:
    error = message.error()
    return error is not None and error.code() == KafkaError._PARTITION_EOF
