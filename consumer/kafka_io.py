"""The only module that imports kafka-python: consumer, sinks, status listener, topic admin.

Two sinks implement the two delivery modes of `stockwatch consume`:

* :class:`AtLeastOnceSink` — idempotent producer (acks=all); the loop commits a batch's offsets
  (explicit offsets, auto-commit off) only after every output of that batch and of every earlier
  batch was acknowledged by the broker. A crash between publish and commit redelivers the batch:
  duplicates are possible (same ``anomaly_id``), losses are not.
* :class:`TransactionalSink` — transactional producer; a batch's outputs and its consumed
  offsets (``send_offsets_to_transaction`` with the consumer's group metadata, KIP-447) commit
  in one transaction. On failure the transaction is aborted (or the fenced producer replaced)
  and :class:`DeliveryFailedError` tells the loop to seek back to the committed offsets.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from consumer.batch import OutputRecord
from consumer.ports import DeliveryError
from consumer.settings import Settings

__all__ = [
    "AtLeastOnceSink",
    "ControlSource",
    "DeliveryFailedError",
    "JsonPublisher",
    "KafkaSource",
    "KafkaUnavailableError",
    "OffsetCommitError",
    "PendingDelivery",
    "StatusListener",
    "StatusTail",
    "TransactionalSink",
    "ensure_topics",
    "make_sink",
]

log = logging.getLogger(__name__)

Offsets = Mapping[tuple[str, int], int]  # (topic, partition) -> next offset to read
_PRODUCER_MAX_REQUEST = 16 * 1024 * 1024  # dead letters carry the original bytes plus headers
_SYNC_COMMIT_TIMEOUT_MS = 10_000  # a synchronous commit never blocks the loop longer than this
_ASYNC_COMMIT_STALE_S = 10.0  # an async commit without a callback this long is not waited for
# The transaction coordinator answers CONCURRENT_TRANSACTIONS while the previous transaction's
# markers are still being written; kafka-python retries AddOffsetsToTxn after retry_backoff_ms
# (default 100 ms), which stalled every few batches by 100-220 ms (bench/hotswap.py).
_TXN_RETRY_BACKOFF_MS = 10


class OffsetCommitError(DeliveryError):
    """The offsets were not committed (the outputs were delivered); retried by the loop."""


class DeliveryFailedError(DeliveryError):
    """A batch's outputs or commit did not go through; nothing of it counts as consumed."""


def _tp_offsets(offsets: Offsets) -> dict[TopicPartition, OffsetAndMetadata]:
    return {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}


def _log_commit_failure(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.warning("async offset commit failed (%r); a later commit covers it", response)


class KafkaSource:
    """The input side: a group member on ``input_topic`` with manual offset commits."""

    def __init__(self, settings: Settings, *, client_id: str = "stockwatch-consume") -> None:
        eos = settings.delivery == "exactly-once"
        self.topic = settings.input_topic
        self._consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=client_id,
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset=settings.auto_offset_reset,
            isolation_level="read_committed" if eos else "read_uncommitted",
            max_poll_records=settings.max_poll_records,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(1000, settings.session_timeout_ms // 10),
            fetch_max_wait_ms=min(500, max(10, settings.poll_timeout_ms)),
            max_partition_fetch_bytes=max(1_048_576, settings.max_message_bytes + 65_536),
        )
        self._commit_in_flight = 0.0  # monotonic send time of the one async commit outstanding
        self._pending_commit: dict[TopicPartition, OffsetAndMetadata] = {}

    def subscribe(self) -> None:
        """Join the group on the input topic (assignment happens inside ``poll``).

        The topic's metadata is fetched first, so the first JoinGroup already sees its partitions
        (otherwise the leader assigns nothing, and a second rebalance follows at once).
        """
        if not self._consumer.partitions_for_topic(self.topic):
            log.warning("input topic %s does not exist (yet); waiting for it", self.topic)
        self._consumer.subscribe([self.topic])

    def poll(self, timeout_ms: int, max_records: int) -> dict[tuple[str, int], list[Any]]:
        """Up to ``max_records`` records, grouped by (topic, partition), in offset order."""
        self._flush_async_commit()
        polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return {(tp.topic, tp.partition): recs for tp, recs in polled.items() if recs}

    def assignment(self) -> set[tuple[str, int]]:
        """The partitions assigned to this member right now."""
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def pause_all(self) -> None:
        """Stop fetching from every assigned partition (the group membership stays alive)."""
        tps = self._consumer.assignment()
        if tps:
            self._consumer.pause(*tps)

    def resume_all(self) -> None:
        """Fetch again from every assigned partition."""
        tps = self._consumer.paused()
        if tps:
            self._consumer.resume(*tps)

    def seek(self, offsets: Offsets) -> None:
        """Rewind (or advance) assigned partitions; others (revoked meanwhile) are skipped."""
        assigned = self._consumer.assignment()
        for (topic, partition), offset in offsets.items():
            tp = TopicPartition(topic, partition)
            if tp in assigned:
                self._consumer.seek(tp, offset)

    def committed(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """The group's committed offsets (a broker round trip)."""
        return {(t, p): self._consumer.committed(TopicPartition(t, p)) for t, p in partitions}

    def commit(self, offsets: Offsets, *, sync: bool = True) -> None:
        """Commit explicit offsets (next offset to read) of partitions still assigned to us.

        Async commits are coalesced: while one is in flight, newer offsets wait (a later commit
        covers an earlier one) and go out with the next ``commit``/``poll``. Without this, a
        fast loop of small batches sent one commit per batch and overran the connection's
        in-flight request slots: at 2k events/s (batches of ~7 records) about 40 commits a
        second failed with NodeNotReadyError("max_in_flight"), each logged as a warning.
        """
        self._pending_commit.update(_tp_offsets(offsets))
        if sync:
            mine = self._take_pending()
            if mine:
                self._consumer.commit(offsets=mine, timeout_ms=_SYNC_COMMIT_TIMEOUT_MS)
        else:
            self._flush_async_commit()

    def _take_pending(self) -> dict[TopicPartition, OffsetAndMetadata]:
        assigned = self._consumer.assignment()
        mine = {tp: om for tp, om in self._pending_commit.items() if tp in assigned}
        self._pending_commit = {}
        return mine

    def _flush_async_commit(self) -> None:
        if not self._pending_commit:
            return
        if self._commit_in_flight and time.monotonic() - self._commit_in_flight < _ASYNC_COMMIT_STALE_S:
            return
        mine = self._take_pending()
        if mine:
            self._commit_in_flight = time.monotonic()
            self._consumer.commit_async(offsets=mine, callback=self._async_commit_done)

    def _async_commit_done(self, offsets: Any, response: Any) -> None:
        self._commit_in_flight = 0.0
        _log_commit_failure(offsets, response)

    def group_metadata(self) -> Any:
        """The member's group metadata, for ``send_offsets_to_transaction``."""
        return self._consumer.group_metadata()

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the high watermark, for assigned partitions whose both ends are known."""
        out = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            try:
                pos = self._consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue
            if pos is not None:
                out[(tp.topic, tp.partition)] = max(0, high - pos)
        return out

    def close(self) -> None:
        """Leave the group (a prompt rebalance for the others); never auto-commits."""
        self._consumer.close(autocommit=False)


def _producer_config(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.producer_linger_ms,
        "batch_size": settings.producer_batch_size,
        "max_request_size": max(_PRODUCER_MAX_REQUEST, 2 * settings.max_message_bytes),
    }


def _send_all(producer: Any, outputs: Sequence[OutputRecord]) -> list[Any]:
    send = producer.send
    return [send(o.topic, value=o.value, key=o.key, headers=o.headers) for o in outputs]


class PendingDelivery:
    """The broker acknowledgements still to come for one batch's outputs."""

    __slots__ = ("_futures",)

    def __init__(self, futures: list[Any]) -> None:
        self._futures = futures

    def done(self) -> bool:
        """Every output acknowledged or failed."""
        return all(f.is_done for f in self._futures)

    def wait(self) -> None:
        """Block until every output is acknowledged or failed."""
        for f in self._futures:
            if not f.is_done:
                with contextlib.suppress(KafkaError):  # a failure is reported by error()
                    f.get()

    def error(self) -> BaseException | None:
        """The first failure (only meaningful once :meth:`done`)."""
        for f in self._futures:
            if f.is_done and f.exception is not None:
                return DeliveryFailedError(f"output not acknowledged: {f.exception!r}")
        return None


class _Delivered:
    """An already completed delivery (the transactional sink finishes inside ``publish``)."""

    def done(self) -> bool:
        return True

    def error(self) -> BaseException | None:
        return None

    def wait(self) -> None:
        return None


class AtLeastOnceSink:
    """Idempotent producer (acks=all); the loop commits a batch's offsets once all its outputs are acked.

    ``publish`` only enqueues, so the producer's I/O thread sends a batch's few outputs while the
    loop already polls and scores the next one; the loop commits in order, and only batches whose
    every output was acknowledged.
    """

    def __init__(self, settings: Settings) -> None:
        self._producer = KafkaProducer(client_id="stockwatch-consume", **_producer_config(settings))

    def publish(
        self, outputs: Sequence[OutputRecord], offsets: Offsets, source: KafkaSource
    ) -> PendingDelivery:
        """Enqueue the outputs; the returned handle tells when the broker acknowledged them."""
        try:
            return PendingDelivery(_send_all(self._producer, outputs))
        except KafkaError as exc:
            raise DeliveryFailedError(repr(exc)) from exc

    def commit(self, offsets: Offsets, source: KafkaSource, *, sync: bool) -> None:
        """Commit offsets whose outputs are all acknowledged; OffsetCommitError if refused now."""
        try:
            source.commit(offsets, sync=sync)
        except KafkaError as exc:  # e.g. a rebalance in progress: the loop commits again later
            raise OffsetCommitError(repr(exc)) from exc

    def flush(self, timeout_s: float | None = None) -> None:
        """Send everything buffered and wait for the acknowledgements."""
        self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is buffered and close the producer."""
        self._producer.close(timeout=timeout_s)


class TransactionalSink:
    """One Kafka transaction per batch: outputs + consumed offsets, all or nothing."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.transactional_id = settings.transactional_id or f"{settings.group_id}.{socket.gethostname()}"
        self._producer = self._new_producer()

    def _new_producer(self) -> Any:
        producer = KafkaProducer(
            client_id="stockwatch-consume-tx",
            transactional_id=self.transactional_id,
            transaction_timeout_ms=self._settings.transaction_timeout_ms,
            retry_backoff_ms=_TXN_RETRY_BACKOFF_MS,
            **_producer_config(self._settings),
        )
        producer.init_transactions()  # fences older instances, aborts their open transaction
        log.info("transactional producer ready (transactional.id %s)", self.transactional_id)
        return producer

    def publish(self, outputs: Sequence[OutputRecord], offsets: Offsets, source: KafkaSource) -> _Delivered:
        """Commit outputs and offsets in one transaction; on any error abort and raise DeliveryFailedError."""
        producer = self._producer
        try:
            producer.begin_transaction()
            futures = _send_all(producer, outputs)
            producer.send_offsets_to_transaction(_tp_offsets(offsets), source.group_metadata())
            producer.commit_transaction()  # flushes; fails if any send failed
            failed = [f.exception for f in futures if f.failed()]
            if failed:  # cannot happen after a successful commit; kept as a guard
                raise DeliveryFailedError(f"{len(failed)} outputs failed inside a committed transaction")
        except KafkaError as exc:
            self._recover(exc)
            raise DeliveryFailedError(repr(exc)) from exc
        return _Delivered()

    def commit(self, offsets: Offsets, source: KafkaSource, *, sync: bool) -> None:
        """Nothing to do: the offsets were committed inside the transaction."""

    def flush(self, timeout_s: float | None = None) -> None:
        """Nothing buffered between transactions."""

    def _recover(self, exc: BaseException) -> None:
        try:
            self._producer.abort_transaction()
            log.warning("transaction aborted: %r", exc)
        except KafkaError as abort_exc:  # fenced or fatal: this producer is finished
            log.warning("abort failed (%r) after %r; replacing the producer", abort_exc, exc)
            try:
                self._producer.close(timeout=5)
            finally:
                self._producer = self._new_producer()

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the producer (no transaction is open between batches)."""
        self._producer.close(timeout=timeout_s)


def make_sink(settings: Settings) -> AtLeastOnceSink | TransactionalSink:
    """The sink for ``settings.delivery``."""
    return TransactionalSink(settings) if settings.delivery == "exactly-once" else AtLeastOnceSink(settings)


class StatusListener:
    """Reads `model_published` announcements from the status topic (no group: every instance hears all)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.status_topic
        self._consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
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
        out: list[dict[str, Any]] = []
        for records in self._consumer.poll(timeout_ms=int(timeout_s * 1000)).values():
            for record in records:
                try:
                    msg = orjson.loads(record.value) if record.value else None
                except orjson.JSONDecodeError:
                    msg = None
                if isinstance(msg, dict):
                    out.append(msg)
                else:
                    log.debug(
                        "ignoring non-JSON status message",
                        extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
                    )
        return out

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


# =============================================================================================
# --- retrain worker and control plane (consumer/worker.py, consumer/cli_retrain.py) ---
# Everything below belongs to `stockwatch retrain-worker` / `ctl` / `scan`. Kafka errors are
# re-raised as KafkaUnavailableError so callers never import kafka.
# =============================================================================================


class KafkaUnavailableError(RuntimeError):
    """The broker could not be reached or did not acknowledge (retriable: try again later)."""


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
        try:
            futures = [
                self._producer.send(
                    topic,
                    value=orjson.dumps(m, option=orjson.OPT_SERIALIZE_NUMPY),
                    key=str(m[key_field]).encode() if key_field else key,
                    partition=partition,
                )
                for m in messages
            ]
            self._producer.flush(timeout=self._timeout_s)
            for future in futures:
                future.get(timeout=self._timeout_s)
        except KafkaError as exc:
            raise KafkaUnavailableError(f"publishing {len(messages)} messages to {topic}: {exc!r}") from exc

    def close(self) -> None:
        """Flush and close."""
        self._producer.close(timeout=self._timeout_s)


class ControlSource:
    """Reads raw control commands as a group member (one worker handles each command)."""

    def __init__(self, bootstrap: str, topic: str, *, group_id: str, metadata_wait_s: float = 15.0) -> None:
        self.topic = topic
        try:
            self._consumer = self._connect(bootstrap, topic, group_id, metadata_wait_s)
        except KafkaError as exc:
            raise KafkaUnavailableError(f"cannot read {topic} from {bootstrap}: {exc!r}") from exc

    @staticmethod
    def _connect(bootstrap: str, topic: str, group_id: str, metadata_wait_s: float) -> Any:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="stockwatch-retrain-worker",
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

    def commit(self) -> None:
        """Commit the positions of everything returned by ``poll`` so far."""
        try:
            self._consumer.commit()
        except KafkaError as exc:
            raise KafkaUnavailableError(f"committing {self.topic}: {exc!r}") from exc

    def close(self) -> None:
        """Leave the group."""
        self._consumer.close(autocommit=False)


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
        out: list[dict[str, Any]] = []
        try:
            polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        except KafkaError as exc:
            raise KafkaUnavailableError(f"polling {self.topic}: {exc!r}") from exc
        for records in polled.values():
            for record in records:
                try:
                    msg = orjson.loads(record.value) if record.value else None
                except orjson.JSONDecodeError:
                    msg = None
                if isinstance(msg, dict):
                    out.append(msg)
        return out

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close(autocommit=False)


def ensure_worker_topics(bootstrap: str, topics: Iterable[str]) -> list[str]:
    """:func:`ensure_topics` for the retrain worker and ctl; broker errors become KafkaUnavailableError."""
    try:
        return ensure_topics(bootstrap, topics)
    except KafkaError as exc:
        raise KafkaUnavailableError(f"cannot reach the broker at {bootstrap}: {exc!r}") from exc


# =============================================================================================
# --- tools: the demo's raw producer and topic reader ---
# =============================================================================================


class TopicTail:
    """Reads every partition of a topic from the beginning, without a group (for demos and tools)."""

    def __init__(self, bootstrap: str, topic: str, *, read_committed: bool = False) -> None:
        self.topic = topic
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed" if read_committed else "read_uncommitted",
        )
        partitions = self._consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)

    def poll(self, timeout_s: float) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
        """``(key, value, headers)`` of the records that arrived within ``timeout_s``."""
        polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        return [(r.key, r.value, dict(r.headers or [])) for recs in polled.values() for r in recs]

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()


def publish_raw(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Send ``(key, value)`` byte pairs to ``topic`` and wait for every acknowledgement."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in records]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()
