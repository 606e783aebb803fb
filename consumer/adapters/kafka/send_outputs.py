"""How the sinks hand a batch's outputs to kafka-python's producer: partitions computed once per
batch (:mod:`.key_partitions`), the accumulator's fast path where it surely applies
(:mod:`.fast_send`), ``send`` otherwise, and which failed output was refused itself
(:class:`FirstFailures`)."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnknownTopicOrPartitionError,
)
from kafka.future import Future

from consumer.adapters.kafka.fast_send import fast_enqueue
from consumer.adapters.kafka.key_partitions import key_partitions
from consumer.ports import OutputFailure, OutputRecord

__all__ = ["FirstFailures", "send_all", "send_one"]

_MAX_FAILURES_KEPT = 4096  # exception objects remembered to tell a refused record from collateral failures


class FirstFailures:
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


def send_all(producer: Any, outputs: Sequence[OutputRecord], watch: FirstFailures) -> list[Any]:
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
                    watched(future if future is not None else send_one(send, o, partition, known, refresh))
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


def send_one(
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
            return send_one(send, o, o.partition, known, refresh)
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
