"""Two sinks implement the two delivery modes of `stockwatch consume`:

* :class:`AtLeastOnceSink` — idempotent producer (acks=all); the loop commits a batch's offsets
  (explicit offsets, auto-commit off) only after every output of that batch and of every earlier
  batch was acknowledged by the broker. A crash between publish and commit redelivers the batch:
  duplicates are possible (same ``anomaly_id``), losses are not.
* :class:`TransactionalSink` — transactional producer; the outputs and consumed offsets
  (``send_offsets_to_transaction`` with the consumer's group metadata, KIP-447) of the batches
  decided within ``commit_interval_ms`` commit in one transaction (:mod:`consumer.adapters.spans`),
  every call bounded in time. On failure the producer is replaced (which aborts the transaction)
  and every batch of it fails with :class:`DeliveryFailedError`: the loop seeks back to the
  committed offsets.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from config.kafka import KafkaSettings
from consumer.adapters.kafka.client_config import kafka_python_config
from consumer.adapters.kafka.send_outputs import FirstFailures, send_all
from consumer.adapters.kafka.source import (
    DeliveryFailedError,
    KafkaSource,
    OffsetCommitError,
    _tp_offsets,
    membership_error,
)
from consumer.adapters.kafka.transactions import Deadlines, TransactionStuckError
from consumer.adapters.spans import SpanDelivery, TransactionSpans
from consumer.ports import Offsets, OutputRecord

log = logging.getLogger(__name__)

# CONCURRENT_TRANSACTIONS (previous markers still being written) is retried after retry_backoff_ms:
# the 100 ms default stalls every few batches, so it is short (figures in bench/hotswap.py output).
_TXN_RETRY_BACKOFF_MS = 2
_DISCARD_JOIN_S = 2.0  # a force-closed I/O thread fails what it held and ends


class PendingDelivery:
    """The broker acknowledgements still to come for one batch's outputs."""

    __slots__ = ("_first", "_futures")

    def __init__(self, futures: list[Any], first: FirstFailures) -> None:
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
        self._first = FirstFailures()

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
            self._first = FirstFailures()
        try:
            return PendingDelivery(send_all(self._producer, outputs, self._first), self._first)
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

    def discard(self) -> bool:
        """No transaction: every batch published is sent (a dropped one's offsets are never committed)."""
        return False

    def flush(self, timeout_s: float | None = None) -> None:
        """Send everything buffered and wait for the acknowledgements."""
        self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is buffered and close the producer."""
        self._producer.close(timeout=timeout_s)


class TransactionalSink:
    """Exactly-once: the outputs and consumed offsets of the batches of one transaction, all or
    nothing; a transaction spans the batches of ``interval_s`` (:mod:`consumer.adapters.spans`).

    Every transactional call is bounded (:mod:`.transactions`). After any failure the producer is
    replaced, not reused: kafka-python keeps a refused record's sequence number, so the next
    transaction to that partition would fail out of sequence and wedge the commit. The new
    producer's ``init_transactions`` (same transactional id) fences the old one and aborts its
    transaction; the loop retries the batches from the committed offsets.
    """

    def __init__(
        self, kafka: KafkaSettings, deadlines: Deadlines | None = None, *, interval_s: float = 0.0
    ) -> None:
        self._deadlines = deadlines or Deadlines()
        self._config = kafka_python_config(
            kafka.transactional_producer_config(client_id="stockwatch-consume-tx"), KafkaProducer
        )
        self.transactional_id: str = self._config["transactional_id"]
        self._spans = TransactionSpans(
            interval_s,
            error=DeliveryFailedError,
            errors=(KafkaError, TransactionStuckError),
            begin=lambda: self._ready().begin_transaction(),
            abort=self._abort,
            recover=self._replace,
            membership=membership_error,
        )
        self._producer: Any = self._new_producer()
        self._first = FirstFailures()

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

    def publish(self, outputs: Sequence[OutputRecord], offsets: Offsets, source: KafkaSource) -> SpanDelivery:
        """Add outputs and offsets to the open transaction (begun here if none is); it commits when
        due or waited for. A failure replaces the producer: every batch of it fails (see the handle)."""
        futures: list[Any] = []

        def send() -> None:
            futures.extend(send_all(self._ready(), outputs, self._first))
            refused = next((f.exception for f in futures if f.failed()), None)
            if refused is not None:  # refused before sending: the transaction must not commit without it
                raise refused

        return self._spans.join(
            offsets, send, partial(self._first.failures, futures), partial(self._commit, source)
        )

    def _ready(self) -> Any:
        if self._producer is None:  # the last replacement failed (broker away): try again now
            try:
                self._producer = self._new_producer()
            except (KafkaError, TransactionStuckError) as exc:
                raise DeliveryFailedError(f"no transactional producer: {exc!r}") from exc
        return self._producer

    def _commit(self, source: KafkaSource, offsets: dict[tuple[str, int], int]) -> None:
        """Send the offsets into the open transaction and commit it (a failure raises the client's error)."""
        producer, deadlines = self._ready(), self._deadlines
        deadlines.send_offsets(producer, _tp_offsets(offsets), source.group_metadata())
        deadlines.commit(producer)  # flushes; fails if any send failed

    def _abort(self) -> None:
        if self._producer is not None:
            self._deadlines.abort(self._producer)

    def discard(self) -> bool:
        """The loop dropped the open transaction's batches (lost partitions, a re-join): abort it
        (True: one was open)."""
        return self._spans.discard()

    def commit(self, offsets: Offsets, source: KafkaSource, *, sync: bool) -> None:
        """Nothing to do: the offsets are committed inside the transaction."""

    def flush(self, timeout_s: float | None = None) -> None:
        """Nothing buffered outside the transaction."""

    def _replace(self, exc: BaseException) -> None:
        old, self._producer = self._producer, None
        if old is not None:
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
        """Abort a transaction left open (the loop settles, so commits, what it keeps), then close."""
        self._deadlines.interrupt()  # never a new producer now: it would fence an instance taking over
        self.discard()
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


def make_sink(kafka: KafkaSettings, *, interval_s: float = 0.0) -> AtLeastOnceSink | TransactionalSink:
    """The sink for ``kafka.delivery`` (``interval_s``: how long a transaction spans batches)."""
    return TransactionalSink(kafka, interval_s=interval_s) if kafka.exactly_once else AtLeastOnceSink(kafka)
