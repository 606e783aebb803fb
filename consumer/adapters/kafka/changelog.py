"""The state changelog on Kafka: a topic partitioned like the input, read back on assignment and
truncated by the state's rolling rewrite (DeleteRecords, docs/consume.md § Per-item state).

Its policy is ``compact,delete`` with no retention (``retention.ms``/``retention.bytes`` -1):
compaction keeps the last lineage and fresh-start mark, nothing expires by time or size, and
DeleteRecords (refused by a compact-only topic) is allowed. A changelog created compact-only by an
earlier version is altered to that policy once (incremental, only these three settings); if the
broker refuses, it keeps being restored but is never truncated (the store logs that once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic, OffsetSpec
from kafka.errors import InvalidPartitionsError, KafkaError, PolicyViolationError, TopicAlreadyExistsError

from config.kafka import KafkaSettings
from consumer.adapters.kafka.connect import Broker, client_kwargs
from consumer.ports import KafkaUnavailableError

__all__ = ["ChangelogPartitions", "KafkaChangelog", "ensure_changelog"]

log = logging.getLogger(__name__)

TRUNCATABLE = {"cleanup.policy": "compact,delete", "retention.ms": "-1", "retention.bytes": "-1"}
COMPACTED = {**TRUNCATABLE, "min.compaction.lag.ms": "60000"}  # what a new changelog is created with
_ADMIN_TIMEOUT_MS = 10_000
_RESTORE_FETCH_BYTES = 32 * 1024 * 1024
_RESTORE_TIMEOUT_S = 300.0
_KEY, _VALUE = (
    attrgetter("key"),
    attrgetter("value"),
)  # a restore that makes no progress for this long is an outage


def ensure_changelog(broker: Broker, topic: str, *, input_topic: str) -> int:
    """Create the changelog (compact,delete) with the input's partition count if absent; returns that count.

    An existing changelog with fewer partitions than the input (partitions added to the input,
    even while the service runs) gets the missing ones: empty, so the new input partitions' items
    start from the inventory seed. Stopping instead stalled every partition of a running service.
    """
    try:
        return _ensure(broker, topic, input_topic)
    except KafkaError as exc:
        raise KafkaUnavailableError(f"could not create the state changelog {topic}: {exc!r}") from exc


def _ensure(broker: Broker, topic: str, input_topic: str) -> int:
    admin = KafkaAdminClient(**client_kwargs(broker, KafkaAdminClient, client_id="stockwatch-admin"))
    try:
        described = admin.describe_topics([input_topic, topic])
        meta = {t.get("name") or t.get("topic"): t for t in described if not t.get("error_code")}
        if input_topic not in meta:
            raise KafkaUnavailableError(f"input topic {input_topic} does not exist yet")
        want = len(meta[input_topic]["partitions"])
        if topic in meta:
            have = len(meta[topic]["partitions"])
            if have < want:
                _add_partitions(admin, topic, have, want, input_topic)
            _allow_truncation(admin, topic)
            return want
        try:
            admin.create_topics(
                [NewTopic(topic, num_partitions=want, replication_factor=-1, topic_configs=COMPACTED)],
                timeout_ms=30_000,
            )
            log.info("created the state changelog %s (%d partitions, compact,delete)", topic, want)
        except TopicAlreadyExistsError:
            pass  # another instance was quicker
        return want
    finally:
        admin.close()


def _add_partitions(admin: KafkaAdminClient, topic: str, have: int, want: int, input_topic: str) -> None:
    try:
        admin.create_partitions({topic: NewPartitions(want)}, timeout_ms=30_000)
    except InvalidPartitionsError:
        return  # another instance was quicker
    log.warning(
        "state changelog %s had %d partitions, the input %s has %d: added the missing ones "
        "(items of the new input partitions start from the inventory seed)",
        topic, have, input_topic, want,
    )  # fmt: skip


def _allow_truncation(admin: KafkaAdminClient, topic: str) -> None:
    """Give a compact-only changelog (an earlier version's) the policy DeleteRecords needs."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    try:
        described: dict[str, Any] = admin.describe_configs([resource])
        policy = str(described["topic"][topic]["cleanup.policy"]["value"])
    except Exception as exc:  # an older response layout or a refusal: leave it as it is
        log.info("could not read the configuration of %s (%r)", topic, exc)
        return
    if "delete" in policy.split(","):
        return
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=TRUNCATABLE)])
        log.info("state changelog %s: cleanup.policy compact -> compact,delete (no retention)", topic)
    except Exception as exc:  # the store then logs that the log is not truncated
        log.warning("could not allow DeleteRecords on %s (%r)", topic, exc)


class ChangelogPartitions:
    """Makes sure the changelog covers a partition before it is read: creates the topic at the
    first call and adds partitions when asked for one beyond the count it last saw (input
    partitions added while the service runs); a no-op otherwise. Serves both transports' readers."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self._kafka = kafka
        self._partitions = 0  # the changelog's partitions the last ensure saw (0: not yet)

    def __call__(self, partition: int = 0) -> None:
        if partition >= self._partitions:
            try:
                self._partitions = ensure_changelog(
                    self._kafka, self.topic, input_topic=self._kafka.topics.input
                )
            except KafkaError as exc:
                raise KafkaUnavailableError(
                    f"could not create the state changelog {self.topic}: {exc!r}"
                ) from exc


class KafkaChangelog:
    """Reads one changelog partition from its beginning to its end at the time of the call."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self._kafka = kafka
        self.ensure = ChangelogPartitions(kafka, topic)
        self._client: KafkaConsumer | None = None  # created at the first restore
        self._admin: KafkaAdminClient | None = None  # created at the first truncation

    @property
    def _consumer(self) -> KafkaConsumer:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> KafkaConsumer:
        return KafkaConsumer(
            **client_kwargs(self._kafka, KafkaConsumer, client_id="stockwatch-consume-restore"),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # records deleted mid-read: go on from the new start, never the end
            isolation_level="read_committed",  # an aborted transaction's changes never count
            max_partition_fetch_bytes=_RESTORE_FETCH_BYTES,
            fetch_max_bytes=_RESTORE_FETCH_BYTES,
        )

    def read(
        self, partition: int, *, tick: Callable[[], None] = lambda: None
    ) -> tuple[list[bytes | None], list[bytes | None]]:
        """Keys and values of the partition, in order, up to the end offset seen at the start
        (``tick`` is called between fetches: the loop's liveness during a long restore)."""
        self.ensure(partition)
        tp = TopicPartition(self.topic, partition)
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        try:
            consumer = self._consumer
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            end = consumer.end_offsets([tp])[tp]
            last_progress = time.monotonic()
            while consumer.position(tp) < end:
                polled: dict[Any, list[Any]] = consumer.poll(timeout_ms=500, max_records=100_000)
                tick()
                records = polled.get(tp, ())
                keys.extend(map(_KEY, records))
                values.extend(map(_VALUE, records))
                if polled:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > _RESTORE_TIMEOUT_S:
                    raise KafkaUnavailableError(f"restore of {self.topic}[{partition}] made no progress")
        except KafkaError as exc:
            raise KafkaUnavailableError(f"could not read {self.topic}[{partition}]: {exc!r}") from exc
        finally:
            if self._client is not None:
                self._client.assign([])
        return keys, values

    def _admin_client(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = KafkaAdminClient(
                **client_kwargs(self._kafka, KafkaAdminClient, client_id="stockwatch-consume-truncate"),
                request_timeout_ms=_ADMIN_TIMEOUT_MS,
            )
        return self._admin

    def end_offset(self, partition: int) -> int:
        """The partition's high watermark, a lower bound of the next record's offset (the admin
        client: called by the truncation thread, never with the restore reader)."""
        tp = TopicPartition(self.topic, partition)
        try:
            got = self._admin_client().list_partition_offsets(
                {tp: OffsetSpec.LATEST}, timeout_ms=_ADMIN_TIMEOUT_MS
            )
        except KafkaError as exc:
            raise KafkaUnavailableError(
                f"could not read the end of {self.topic}[{partition}]: {exc!r}"
            ) from exc
        return int(got[tp].offset)

    def truncate(self, partition: int, before: int) -> bool:
        """Delete the partition's records below ``before``; False when the topic's policy refuses."""
        try:
            self._admin_client().delete_records(
                {TopicPartition(self.topic, partition): before}, timeout_ms=_ADMIN_TIMEOUT_MS
            )
        except PolicyViolationError:
            return False
        except KafkaError as exc:
            raise KafkaUnavailableError(f"could not truncate {self.topic}[{partition}]: {exc!r}") from exc
        return True

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
        if self._client is not None:
            self._client.close(autocommit=False)
