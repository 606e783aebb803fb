"""The two delivery modes of `stockwatch consume` on librdkafka (same rules as consumer.adapters.kafka.sinks).

* :class:`ConfluentAtLeastOnceSink` — idempotent producer (acks=all); ``publish`` only enqueues
  and returns a :class:`ConfluentDelivery`, and the loop commits a batch's offsets once every
  output of it and of every earlier batch was acknowledged.
* :class:`ConfluentTransactionalSink` — one transaction for the batches decided within
  ``commit_interval_ms`` (:mod:`consumer.adapters.spans`), with their outputs and consumed offsets
  (``send_offsets_to_transaction``); on failure the transaction is aborted (a fatal error replaces
  the producer) and each of its batches fails with :class:`ConfluentDeliveryError`: the loop
  seeks back.

librdkafka reports acknowledgements through callbacks that run inside ``poll``/``flush``; the
delivery handle polls the producer when asked whether it is done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from config.kafka import KafkaSettings
from consumer.adapters.confluent.source import (
    LIBRDKAFKA_LOG,
    ConfluentSource,
    librdkafka_config,
    membership_error,
)
from consumer.adapters.spans import SpanDelivery, TransactionSpans
from consumer.ports import DeliveryError, Offsets, OutputFailure, OutputRecord

log = logging.getLogger(__name__)

_TXN_TIMEOUT_S = 20.0  # one transactional call (commit, abort, send offsets) waits at most this long
_STOP_TIMEOUT_S = 3.0  # the same once the service is stopping (SIGTERM is honoured in bounded time)
_QUEUE_FULL_WAIT_S = 0.05
_METADATA_TIMEOUT_S = 5.0
# CONCURRENT_TRANSACTIONS (previous markers still being written) is retried after retry.backoff.ms: keep it short.
_TXN_RETRY_BACKOFF_MS = 10
_TOO_LARGE = frozenset((KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE))
_INVALID = frozenset((KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG))

Report = Callable[[int, KafkaError | None, Message | None], None]  # (output index, error, message)


class ConfluentDeliveryError(DeliveryError):
    """A batch's outputs or its transaction did not go through; nothing of it counts as consumed."""


def _failures(errors: Sequence[tuple[int, KafkaError]]) -> list[OutputFailure]:
    """The outputs that failed, and whether the record itself was refused."""
    out = []
    for index, err in errors:
        code = err.code()
        kind = "too_large" if code in _TOO_LARGE else "invalid" if code in _INVALID else "transient"
        out.append(OutputFailure(index, kind, str(err)))
    return out


def producer_config(config: Mapping[str, Any], kafka: KafkaSettings) -> dict[str, Any]:
    """librdkafka's names for a producer config of :class:`config.KafkaSettings`, plus its delivery timeout."""
    return {
        **librdkafka_config(config),
        # An unacknowledged output fails after this long, so a broker outage reaches the loop
        # (rewind, retry) well before max.poll.interval.ms evicts the member (librdkafka's default
        # equals max.poll.interval.ms' 300 s; kafka-python's delivery timeout is 120 s).
        # (librdkafka also requires it <= transaction.timeout.ms for a transactional producer.)
        "message.timeout.ms": kafka.delivery_timeout_ms,
        "logger": LIBRDKAFKA_LOG,
    }


class ConfluentDelivery:
    """The broker acknowledgements still to come for one batch's outputs."""

    __slots__ = ("_errors", "_pending", "_producer", "fatal")

    def __init__(self, producer: Producer, expected: int) -> None:
        self._producer = producer
        self._pending = expected
        self._errors: list[tuple[int, KafkaError]] = []
        self.fatal = False  # the producer is unusable (an idempotence error): the sink replaces it

    def acknowledged(self, index: int, err: KafkaError | None, _message: Message | None) -> None:
        """librdkafka's delivery callback for output ``index`` (runs inside ``poll``/``flush``)."""
        self._pending -= 1
        if err is not None:
            self._errors.append((index, err))
            self.fatal = self.fatal or err.fatal()

    def done(self) -> bool:
        """Every output acknowledged or failed (serves pending callbacks first)."""
        if self._pending > 0:
            self._producer.poll(0)
        return self._pending <= 0

    def wait(self) -> None:
        """Block until every output is acknowledged or failed."""
        while self._pending > 0:
            self._producer.poll(0.1)

    def error(self) -> BaseException | None:
        """The first failure (only meaningful once :meth:`done`)."""
        if self._errors:
            failures = _failures(self._errors)
            return ConfluentDeliveryError(f"output not acknowledged: {failures[0].error}", failures=failures)
        return None


def _produce_all(producer: Producer, outputs: Sequence[OutputRecord], report: Report) -> None:
    produce = producer.produce
    refreshed: set[str] = set()
    for i, o in enumerate(outputs):
        headers: Any = o.headers or None
        where: dict[str, Any] = {} if o.partition is None else {"partition": o.partition}
        while True:
            try:
                produce(o.topic, o.value, o.key, headers=headers, on_delivery=partial(report, i), **where)
                break
            except BufferError:  # the local queue is full: let the I/O thread drain it
                producer.poll(_QUEUE_FULL_WAIT_S)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                code = error.code() if isinstance(error, KafkaError) else None
                if (
                    code == KafkaError._UNKNOWN_PARTITION
                    and o.partition is not None
                    and o.topic not in refreshed
                ):
                    # partitions added since the last metadata refresh (5 min): librdkafka refuses at
                    # once rather than wait, so the batch failed until then; ask for them, try again
                    refreshed.add(o.topic)
                    producer.list_topics(o.topic, timeout=_METADATA_TIMEOUT_S)
                    continue
                if code not in _TOO_LARGE:
                    raise
                report(i, error, None)  # over message.max.bytes: refused before sending
                break


class ConfluentAtLeastOnceSink:
    """Idempotent producer (acks=all); the loop commits a batch's offsets once all its outputs are acked."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._config = producer_config(kafka.producer_config(client_id="stockwatch-consume"), kafka)
        self._producer = Producer(self._config)
        self._last: ConfluentDelivery | None = None

    def publish(
        self, outputs: Sequence[OutputRecord], offsets: Offsets, source: ConfluentSource
    ) -> ConfluentDelivery:
        """Enqueue the outputs; the returned handle tells when the broker acknowledged them.

        After a fatal error (the idempotent producer can't go on) the producer is replaced first:
        the loop has rewound to the failed batch, so its outputs are produced again.
        """
        if self._last is not None and self._last.fatal:
            log.warning("the producer hit a fatal error; replacing it")
            self._producer = Producer(self._config)
        delivery = self._last = ConfluentDelivery(self._producer, len(outputs))
        try:
            _produce_all(self._producer, outputs, delivery.acknowledged)
        except KafkaException as exc:
            delivery.fatal = bool(exc.args) and isinstance(exc.args[0], KafkaError) and exc.args[0].fatal()
            raise ConfluentDeliveryError(repr(exc)) from exc
        self._producer.poll(0)
        return delivery

    def commit(self, offsets: Offsets, source: ConfluentSource, *, sync: bool) -> None:
        """Commit offsets whose outputs are all acknowledged; a refusal raises a DeliveryError."""
        source.commit(offsets, sync=sync)

    def interrupt(self) -> None:
        """Nothing to cut short: publish only enqueues."""

    def discard(self) -> bool:
        """No transaction: every batch published is sent (a dropped one's offsets are never committed)."""
        return False

    def flush(self, timeout_s: float | None = None) -> None:
        """Send everything buffered and wait for the acknowledgements."""
        self._producer.flush(-1 if timeout_s is None else timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is buffered (the producer is released with the object)."""
        left = self._producer.flush(timeout_s)
        if left:
            log.warning("%d outputs not acknowledged at close; their offsets were not committed", left)


class ConfluentTransactionalSink:
    """Exactly-once: the outputs and consumed offsets of the batches of one transaction, all or
    nothing; a transaction spans the batches of ``interval_s`` (:mod:`consumer.adapters.spans`)."""

    def __init__(self, kafka: KafkaSettings, *, interval_s: float = 0.0) -> None:
        self._config = {
            "retry.backoff.ms": _TXN_RETRY_BACKOFF_MS,
            **producer_config(kafka.transactional_producer_config(client_id="stockwatch-consume-tx"), kafka),
        }
        self.transactional_id: str = self._config["transactional.id"]
        self._stopping = False
        self._spans = TransactionSpans(
            interval_s,
            error=ConfluentDeliveryError,
            errors=(KafkaException,),
            begin=lambda: self._ready().begin_transaction(),
            abort=self._abort,
            recover=self._recover,
            membership=lambda exc: membership_error(exc.args[0] if exc.args else None),
        )
        self._producer: Producer | None = self._new_producer()

    def _timeout(self) -> float:
        return _STOP_TIMEOUT_S if self._stopping else _TXN_TIMEOUT_S

    def interrupt(self) -> None:
        """The service is stopping: later transactional calls wait seconds, not tens (signal-safe)."""
        self._stopping = True

    def _new_producer(self) -> Producer:
        producer = Producer(self._config)
        producer.init_transactions(self._timeout())  # fences older instances, aborts their transaction
        log.info("transactional producer ready (transactional.id %s)", self.transactional_id)
        return producer

    def publish(
        self, outputs: Sequence[OutputRecord], offsets: Offsets, source: ConfluentSource
    ) -> SpanDelivery:
        """Add outputs and offsets to the open transaction (begun here if none is); it commits when
        due or waited for. A failure aborts it: every batch of it fails (see the handle)."""
        failed: list[tuple[int, KafkaError]] = []

        def on_delivery(index: int, err: KafkaError | None, _message: Message | None) -> None:
            if err is not None:
                failed.append((index, err))

        def send() -> None:
            _produce_all(self._ready(), outputs, on_delivery)
            if failed:  # refused before sending: the transaction must not commit without it
                raise KafkaException(failed[0][1])

        return self._spans.join(offsets, send, partial(_failures, failed), partial(self._commit, source))

    def _ready(self) -> Producer:
        if self._producer is None:  # a replacement failed (broker down): try again now
            try:
                self._producer = self._new_producer()
            except KafkaException as exc:
                raise ConfluentDeliveryError(f"no transactional producer: {exc!r}") from exc
        return self._producer

    def _commit(self, source: ConfluentSource, offsets: dict[tuple[str, int], int]) -> None:
        """Send the offsets into the open transaction and commit it (a failure raises KafkaException)."""
        producer = self._ready()
        positions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        producer.send_offsets_to_transaction(positions, source.group_metadata(), self._timeout())
        self._commit_transaction(producer)

    def _commit_transaction(self, producer: Producer) -> None:
        """Commit; a retriable error (e.g. a coordinator moving) is retried until the deadline."""
        deadline = time.monotonic() + self._timeout()
        while True:
            try:  # every attempt within the one deadline: the whole commit is bounded
                producer.commit_transaction(max(0.1, deadline - time.monotonic()))
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or time.monotonic() >= deadline:
                    raise

    def _abort(self) -> None:
        if self._producer is not None:
            self._producer.abort_transaction(self._timeout())

    def discard(self) -> bool:
        """The loop dropped the open transaction's batches (lost partitions, a re-join): abort it
        (True: one was open)."""
        return self._spans.discard()

    def commit(self, offsets: Offsets, source: ConfluentSource, *, sync: bool) -> None:
        """Nothing to do: the offsets are committed inside the transaction."""

    def flush(self, timeout_s: float | None = None) -> None:
        """Nothing buffered outside the transaction."""

    def _recover(self, exc: KafkaException) -> None:
        error = exc.args[0] if exc.args else None
        if self._producer is not None and isinstance(error, KafkaError) and not error.fatal():
            try:
                self._producer.abort_transaction(self._timeout())
                log.warning("transaction aborted: %s", error)
                return
            except KafkaException as abort_exc:
                log.warning("abort failed (%r) after %s; replacing the producer", abort_exc, error)
        else:
            log.warning("fatal producer error (%r); replacing the producer", exc)
        self._producer = None  # if the replacement fails too, the next publish tries again
        if self._stopping:  # the next instance's init_transactions aborts what is left open
            return
        try:
            self._producer = self._new_producer()
        except KafkaException as init_exc:
            log.warning("no transactional producer for now (%r); retried with the next batch", init_exc)

    def close(self, timeout_s: float = 10.0) -> None:
        """Abort a transaction left open (the loop settles, so commits, what it keeps); librdkafka
        frees the producer with the object."""
        self._stopping = True  # never a new producer now: it would fence an instance taking over
        self.discard()
        if self._producer is not None:
            self._producer.flush(timeout_s)


def make_confluent_sink(
    kafka: KafkaSettings, *, interval_s: float = 0.0
) -> ConfluentAtLeastOnceSink | ConfluentTransactionalSink:
    """The sink for ``kafka.delivery`` (``interval_s``: how long a transaction spans batches)."""
    if kafka.exactly_once:
        return ConfluentTransactionalSink(kafka, interval_s=interval_s)
    return ConfluentAtLeastOnceSink(kafka)
