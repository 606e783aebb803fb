"""Two sinks implement the two delivery modes of `stockwatch consume`:

* :class:`AtLeastOnceSink` — idempotent producer (acks=all); the loop commits a batch's offsets
  (explicit offsets, auto-commit off) only after every output of that batch and of every earlier
  batch was acknowledged by the broker. A crash between publish and commit redelivers the batch:
  duplicates are possible (same ``anomaly_id``), losses are not.
* :class:`TransactionalSink` — transactional producer; a batch's outputs and its consumed
  offsets (``send_offsets_to_transaction`` with the consumer's group metadata, KIP-447) commit
  in one transaction, every call bounded in time. On failure the producer is replaced (which
  aborts the transaction) and :class:`DeliveryFailedError` tells the loop to seek back to the
  committed offsets.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnknownTopicOrPartitionError,
)
from kafka.future import Future

from config.kafka import KafkaSettings
from consumer.adapters.kafka.fast_send import fast_enqueue
from consumer.adapters.kafka.key_partitions import key_partitions
from consumer.adapters.kafka.source import (
    DeliveryFailedError,
    KafkaSource,
    OffsetCommitError,
    _tp_offsets,
    kafka_python_config,
    membership_error,
)
from consumer.adapters.kafka.transactions import Deadlines, TransactionStuckError
from consumer.ports import Delivered, Offsets, OutputFailure, OutputRecord

log = logging.getLogger(__name__)

# CONCURRENT_TRANSACTIONS (previous markers still being written) is retried after retry_backoff_ms:
# the 100 ms default stalls every few batches, so it is short (figures in bench/hotswap.py output).
_TXN_RETRY_BACKOFF_MS = 2
_DISCARD_JOIN_S = 2.0  # a force-closed I/O thread fails what it held and ends
_MAX_FAILURES_KEPT = 4096  # exception objects remembered to tell a refused record from collateral failures


class _FirstFailures:
    """Which record failed first with each exception object.

    kafka-python's idempotent producer takes a refused record as fatal and then fails every
    record in flight with the same exception object; the record refused is the first one failed
    with it (the others are collateral: reported as transient).
    """

    def __init__(self) -> None:
        self._first: dict[int, Any] = {}  # id(exception) -> the future failed first with it

    def watch(self, future: Any) -> Any:
        future.add_errback(self._failed, future)
        return future

    def _failed(self, future: Any, exc: BaseException) -> None:  # runs in the producer's I/O thread
        if len(self._first) >= _MAX_FAILURES_KEPT:  # a long outage: forget the oldest half
            for key in list(self._first)[: _MAX_FAILURES_KEPT // 2]:
                self._first.pop(key, None)
        self._first.setdefault(id(exc), future)

    def failures(self, futures: Sequence[Any]) -> list[OutputFailure]:
        """The outputs whose send failed, and whether the record itself was refused."""
        out = []
        for i, f in enumerate(futures):
            if not (f.is_done and f.exception is not None):
                continue
            exc, kind = f.exception, "transient"
            if self._first.get(id(exc)) is f:
                if isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError):
                    kind = "too_large"
                elif isinstance(exc, InvalidRecordError | CorruptRecordError):
                    kind = "invalid"
            out.append(OutputFailure(i, kind, repr(exc)))
        return out


_TRACKED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()  # producer -> its topics


def _track_topics(producer: Any, outputs: Sequence[OutputRecord]) -> None:
    """Register every new output topic before the first send: kafka-python's send waits for one
    unknown topic's metadata at a time, retry_backoff_ms apart (a batch's second new topic, e.g.
    the state changelog, waited 100 ms); registered together, one metadata request has them all."""
    known = _TRACKED.setdefault(producer, set())
    new = {o.topic for o in outputs} - known
    add = getattr(getattr(producer, "_sender", None), "add_topic", None)  # no public way to ask for several
    if not new or add is None:
        return
    for topic in sorted(new):
        with contextlib.suppress(ValueError, KafkaError):  # an invalid name fails its send, as before
            add(topic)
    known |= new


def _send_all(producer: Any, outputs: Sequence[OutputRecord], watch: _FirstFailures) -> list[Any]:
    _track_topics(producer, outputs)
    partitions = key_partitions(outputs, _known_partitions(producer))
    fast = fast_enqueue(producer)
    if fast is not None and not fast.begin():  # closed: send raises what it always did
        fast = None
    send, watched = producer.send, watch.watch
    known, refresh = _known_partitions(producer), _metadata_refresh(producer)
    futures = []
    try:
        for o, partition in zip(outputs, partitions, strict=True):
            try:
                future = fast.enqueue(o, partition) if fast is not None else None
                futures.append(
                    watched(future if future is not None else _send_one(send, o, partition, known, refresh))
                )
            except MessageSizeTooLargeError as exc:  # over max_request_size: refused before sending
                futures.append(watched(Future().failure(exc)))
            except KafkaError as exc:  # an earlier output was refused meanwhile: keep its future to name it
                futures.append(watched(Future().failure(exc)))
                break
    finally:
        if fast is not None:
            fast.finish()  # one sender wakeup for the publish's new or full batches
    return futures


def _send_one(
    send: Any,
    o: OutputRecord,
    partition: int | None,
    known: Callable[[str], set[int] | None],
    refresh: Callable[[], None],
) -> Any:
    """``send`` with the partition computed for ``o``; refused (the topic's partitions changed
    since), the producer partitions it as it would have. A partition ``o`` names itself that the
    producer's metadata lacks (partitions added since its last refresh: kafka-python raises
    ValueError where the Java producer waits for metadata) fails as retriable after asking for a
    refresh: the loop retries the batch instead of stopping."""
    try:
        return send(o.topic, value=o.value, key=o.key, headers=o.headers, partition=partition)
    except ValueError:
        if partition != o.partition:
            return _send_one(send, o, o.partition, known, refresh)
        partitions = known(o.topic)
        if o.partition is None or o.partition < 0 or (partitions is not None and o.partition in partitions):
            raise
        refresh()
        raise UnknownTopicOrPartitionError(
            f"partition {o.partition} of {o.topic} is not in the producer's metadata yet"
        ) from None


def _metadata_refresh(producer: Any) -> Callable[[], None]:
    """Ask the producer's I/O thread for fresh metadata (it sends the request on its next pass)."""
    request = getattr(getattr(producer, "_metadata", None), "request_update", None)
    return request if callable(request) else lambda: None


def _known_partitions(producer: Any) -> Callable[[str], set[int] | None]:
    """The producer's cached partitions of a topic (None when not known yet): never waits."""
    metadata = getattr(producer, "_metadata", None)  # no public accessor that does not block
    return metadata.partitions_for_topic if metadata is not None else lambda _topic: None


class PendingDelivery:
    """The broker acknowledgements still to come for one batch's outputs."""

    __slots__ = ("_first", "_futures")

    def __init__(self, futures: list[Any], first: _FirstFailures) -> None:
        self._futures = futures
        self._first = first

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
        failures = self._first.failures(self._futures)
        if failures:
            return DeliveryFailedError(f"output not acknowledged: {failures[0].error}", failures=failures)
        return None


class AtLeastOnceSink:
    """Idempotent producer (acks=all); the loop commits a batch's offsets once all its outputs are acked.

    ``publish`` only enqueues, so the producer's I/O thread sends a batch's few outputs while the
    loop already polls and scores the next one; the loop commits in order, and only batches whose
    every output was acknowledged.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self._config = kafka_python_config(
            kafka.producer_config(client_id="stockwatch-consume"), KafkaProducer
        )
        self._producer = KafkaProducer(**self._config)
        self._first = _FirstFailures()

    def publish(
        self, outputs: Sequence[OutputRecord], offsets: Offsets, source: KafkaSource
    ) -> PendingDelivery:
        """Enqueue the outputs; the returned handle tells when the broker acknowledged them.

        After a fatal error (kafka-python's idempotent producer takes any refused record as one)
        the producer is replaced first: the loop has rewound to the failed batch.
        """
        manager = getattr(self._producer, "_transaction_manager", None)  # no public accessor
        if manager is not None and manager.has_fatal_error():
            log.warning("the producer hit a fatal error (%r); replacing it", manager.last_error)
            self._producer.close(timeout=0)  # every record it held has failed already
            self._producer = KafkaProducer(**self._config)
            self._first = _FirstFailures()
        try:
            return PendingDelivery(_send_all(self._producer, outputs, self._first), self._first)
        except KafkaError as exc:
            raise DeliveryFailedError(repr(exc)) from exc

    def commit(self, offsets: Offsets, source: KafkaSource, *, sync: bool) -> None:
        """Commit offsets whose outputs are all acknowledged; OffsetCommitError if refused now."""
        try:
            source.commit(offsets, sync=sync)
        except KafkaError as exc:  # e.g. a rebalance in progress: the loop commits again later
            raise OffsetCommitError(repr(exc)) from exc

    def interrupt(self) -> None:
        """Nothing to cut short: publish only enqueues."""

    def flush(self, timeout_s: float | None = None) -> None:
        """Send everything buffered and wait for the acknowledgements."""
        self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is buffered and close the producer."""
        self._producer.close(timeout=timeout_s)


class TransactionalSink:
    """One Kafka transaction per batch: outputs + consumed offsets, all or nothing.

    Every transactional call is bounded (:mod:`.transactions`). After any failure the producer is
    replaced, not reused: kafka-python keeps a refused record's sequence number, so the next
    transaction to that partition would fail out of sequence and wedge the commit. The new
    producer's ``init_transactions`` (same transactional id) fences the old one and aborts its
    transaction; the loop retries the batch from the committed offsets.
    """

    def __init__(self, kafka: KafkaSettings, deadlines: Deadlines | None = None) -> None:
        self._deadlines = deadlines or Deadlines()
        self._config = kafka_python_config(
            kafka.transactional_producer_config(client_id="stockwatch-consume-tx"), KafkaProducer
        )
        self.transactional_id: str = self._config["transactional_id"]
        self._producer: Any = self._new_producer()
        self._first = _FirstFailures()

    def _new_producer(self) -> Any:
        bound_ms = int(self._deadlines.call_timeout_s * 1000)  # init_transactions and send's metadata wait
        producer = KafkaProducer(
            **{**self._config, "retry_backoff_ms": _TXN_RETRY_BACKOFF_MS, "max_block_ms": bound_ms}
        )
        try:
            producer.init_transactions()  # fences older instances, aborts their open transaction
        except BaseException:
            _discard(producer)
            raise
        log.info("transactional producer ready (transactional.id %s)", self.transactional_id)
        return producer

    def interrupt(self) -> None:
        """The service is stopping: a wedged call gives up within a few seconds (signal-safe)."""
        self._deadlines.interrupt()

    def publish(self, outputs: Sequence[OutputRecord], offsets: Offsets, source: KafkaSource) -> Delivered:
        """Commit outputs and offsets in one transaction; on any error replace the producer and raise
        DeliveryFailedError (or the membership error that refused the offsets)."""
        if self._producer is None:  # the last replacement failed (broker away): try again now
            try:
                self._producer = self._new_producer()
            except (KafkaError, TransactionStuckError) as exc:
                raise DeliveryFailedError(f"no transactional producer: {exc!r}") from exc
        producer, deadlines = self._producer, self._deadlines
        futures: list[Any] = []
        try:
            producer.begin_transaction()
            futures = _send_all(producer, outputs, self._first)
            refused = next((f.exception for f in futures if f.failed()), None)
            if refused is not None:  # refused before sending: the transaction must not commit without it
                raise refused
            deadlines.send_offsets(producer, _tp_offsets(offsets), source.group_metadata())
            deadlines.commit(producer)  # flushes; fails if any send failed
            failed = [f.exception for f in futures if f.failed()]
            if failed:  # cannot happen after a successful commit; kept as a guard
                raise DeliveryFailedError(f"{len(failed)} outputs failed inside a committed transaction")
        except (KafkaError, TransactionStuckError) as exc:
            self._replace(exc)
            refused = membership_error(exc)  # the offsets' generation is stale: the member must re-join
            if refused is not None:
                raise refused from exc
            raise DeliveryFailedError(repr(exc), failures=self._first.failures(futures)) from exc
        return Delivered()

    def commit(self, offsets: Offsets, source: KafkaSource, *, sync: bool) -> None:
        """Nothing to do: the offsets were committed inside the transaction."""

    def flush(self, timeout_s: float | None = None) -> None:
        """Nothing buffered between transactions."""

    def _replace(self, exc: BaseException) -> None:
        old, self._producer = self._producer, None
        _discard(old)
        if self._deadlines.interrupted:  # stopping: the next instance fences it and aborts the transaction
            log.warning("transaction failed (%r) while stopping; its producer is closed", exc)
            return
        log.warning("transaction failed (%r); replacing the producer (this aborts the transaction)", exc)
        try:
            self._producer = self._new_producer()
        except (KafkaError, TransactionStuckError) as init_exc:
            log.warning("no transactional producer for now (%r); retried with the next batch", init_exc)

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the producer (no transaction is open between batches)."""
        if self._producer is not None:
            self._producer.close(timeout=timeout_s)


def _discard(producer: Any) -> None:
    """Stop a failed producer at once: its I/O thread may spin on batches it can never send."""
    sender = getattr(producer, "_sender", None)
    try:
        if sender is not None:
            sender.force_close()  # fails what it still holds; close(timeout=0) alone raises on those
            sender.join(_DISCARD_JOIN_S)
        producer.close(timeout=0)
    except Exception as exc:  # a producer that cannot close cleanly is dropped all the same
        log.warning("closing the failed producer: %r", exc)


def make_sink(kafka: KafkaSettings) -> AtLeastOnceSink | TransactionalSink:
    """The sink for ``kafka.delivery``."""
    return TransactionalSink(kafka) if kafka.exactly_once else AtLeastOnceSink(kafka)
