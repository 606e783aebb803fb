"""Two sinks implement the two delivery modes of `stockwatch consume`:

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
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from config.kafka import KafkaSettings
from consumer.adapters.kafka.source import (
    DeliveryFailedError,
    KafkaSource,
    OffsetCommitError,
    _tp_offsets,
    kafka_python_config,
)
from consumer.ports import Delivered, Offsets, OutputRecord

log = logging.getLogger(__name__)

# CONCURRENT_TRANSACTIONS (previous markers still being written) is retried after retry_backoff_ms:
# the 100 ms default stalls every few batches, so it is short (figures in bench/hotswap.py output).
_TXN_RETRY_BACKOFF_MS = 2


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


class AtLeastOnceSink:
    """Idempotent producer (acks=all); the loop commits a batch's offsets once all its outputs are acked.

    ``publish`` only enqueues, so the producer's I/O thread sends a batch's few outputs while the
    loop already polls and scores the next one; the loop commits in order, and only batches whose
    every output was acknowledged.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self._producer = KafkaProducer(
            **kafka_python_config(kafka.producer_config(client_id="stockwatch-consume"), KafkaProducer)
        )

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

    def __init__(self, kafka: KafkaSettings) -> None:
        self._config = kafka_python_config(
            kafka.transactional_producer_config(client_id="stockwatch-consume-tx"), KafkaProducer
        )
        self.transactional_id: str = self._config["transactional_id"]
        self._producer = self._new_producer()

    def _new_producer(self) -> Any:
        producer = KafkaProducer(**{**self._config, "retry_backoff_ms": _TXN_RETRY_BACKOFF_MS})
        producer.init_transactions()  # fences older instances, aborts their open transaction
        log.info("transactional producer ready (transactional.id %s)", self.transactional_id)
        return producer

    def publish(self, outputs: Sequence[OutputRecord], offsets: Offsets, source: KafkaSource) -> Delivered:
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
        return Delivered()

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


def make_sink(kafka: KafkaSettings) -> AtLeastOnceSink | TransactionalSink:
    """The sink for ``kafka.delivery``."""
    return TransactionalSink(kafka) if kafka.exactly_once else AtLeastOnceSink(kafka)
