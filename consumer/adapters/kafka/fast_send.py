"""A publish's outputs appended straight to kafka-python's record accumulator, one sender wakeup per publish.

``KafkaProducer.send`` spends about half of its ~22 µs per record outside the accumulator's
``append`` (the headers checks, the serializers, the topic's metadata twice, the partitioner's
checks, the size estimate, an eager ``str(self)`` for a debug log), then wakes the I/O thread
whenever a batch is new or full: on every send once a partition has two batches queued, ~100 µs of
wall time each as that thread takes the GIL. :class:`FastEnqueue` does what ``send`` does for a
record whose partition is known and whose size is surely under ``max_request_size``, and wakes the
sender once, after the publish; every other record goes through ``send`` unchanged.

The internals are found by feature once per producer (:func:`fast_enqueue`): when any is missing
(another kafka-python), every record goes through ``send`` as before.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any, Final

from kafka import KafkaProducer
from kafka.structs import TopicPartition

from consumer.ports import OutputRecord

__all__ = ["FastEnqueue", "fast_enqueue", "record_bound", "takes_fast_path"]

# DefaultRecordBatchBuilder.estimate_size_in_bytes: the batch header (61) and a record's overhead (21)
_BATCH_OVERHEAD: Final = 61 + 21
_VARINT_MAX: Final = 5  # bytes of the longest varint a length takes
_APPEND_PARAMS: Final = ("tp", "timestamp_ms", "key", "value", "headers")  # send's positional arguments
_CACHE: weakref.WeakKeyDictionary[Any, FastEnqueue | None] = weakref.WeakKeyDictionary()
_NOT_LOOKED_UP: Final[Any] = object()


def record_bound(o: OutputRecord) -> int | None:
    """An upper bound of ``send``'s size estimate of ``o``; None when ``send`` might refuse its types
    (only exact ``bytes`` keys and values and a list of ``(str, bytes)`` headers take the fast path)."""
    key, value, headers = o.key, o.value, o.headers
    if (
        (key is None and value is None)  # send refuses it (ValueError)
        or (key is not None and type(key) is not bytes)
        or (value is not None and type(value) is not bytes)
        or type(headers) is not list
    ):
        return None
    size = _BATCH_OVERHEAD + 3 * _VARINT_MAX + (len(key) if key else 0) + (len(value) if value else 0)
    for item in headers:
        if not (type(item) is tuple and len(item) == 2 and type(item[0]) is str and type(item[1]) is bytes):
            return None
        size += 2 * _VARINT_MAX + 4 * len(item[0]) + len(item[1])  # UTF-8 takes at most 4 bytes a character
    return size


def takes_fast_path(o: OutputRecord, partition: int | None, known: set[int] | None, limit: int) -> bool:
    """Whether ``send`` would surely append ``o`` to ``partition`` as is: the partition is one of the
    topic's ``known`` ones (else send waits for metadata or refuses it) and ``o`` is surely under
    ``limit`` (else send checks it: MessageSizeTooLargeError)."""
    if partition is None or known is None or partition not in known:
        return False
    bound = record_bound(o)
    return bound is not None and bound <= limit


class FastEnqueue:
    """``send`` without its per-record overheads, for one producer; used by one thread at a time."""

    __slots__ = ("_append", "_known", "_limit", "_manager", "_producer", "_wake", "_wakeup")

    def __init__(
        self,
        producer: Any,
        append: Callable[..., Any],
        wakeup: Callable[[], None],
        limit: int,
        manager: Any,
    ) -> None:
        self._producer = weakref.proxy(producer)  # the cache must not keep a closed producer alive
        self._append = append
        self._wakeup = wakeup
        self._limit = limit
        self._manager = manager  # the transaction manager when transactional, else None
        self._known: dict[str, Any] = {}  # topic -> its partitions (None: unknown), looked up once a publish
        self._wake = False

    def begin(self) -> bool:
        """Start a publish; False when the producer is closed (``send`` then raises as it would)."""
        self._known.clear()
        self._wake = False
        return not self._producer._closed

    def enqueue(self, o: OutputRecord, partition: int | None) -> Any | None:
        """The future of ``o`` appended to ``partition``, or None when ``o`` must go through ``send``.

        Raises what ``send`` raises at the same step (the transaction manager's refusal after an
        earlier failure, a closed accumulator)."""
        if partition is None:
            return None
        known = self._known.get(o.topic, _NOT_LOOKED_UP)
        if known is _NOT_LOOKED_UP:
            known = self._known[o.topic] = self._producer._metadata.partitions_for_topic(o.topic)
        if not takes_fast_path(o, partition, known, self._limit):
            return None
        tp = TopicPartition(o.topic, partition)
        if self._manager is not None:
            self._manager.maybe_add_partition_to_transaction(tp)
        # timestamp_ms None as send passes it: the batch builder stamps the time
        result = self._append(tp, None, o.key, o.value, o.headers, abort_on_new_batch=False)
        if result[1] or result[2]:  # a batch full or new: send would wake the sender now
            self._wake = True
        return result[0]

    def finish(self) -> None:
        """Wake the sender once if any append filled or started a batch."""
        if self._wake:
            self._wake = False
            self._wakeup()


def fast_enqueue(producer: Any) -> FastEnqueue | None:
    """The producer's :class:`FastEnqueue`, or None when its internals are not the ones it mirrors."""
    try:
        return _CACHE[producer]
    except KeyError:
        pass
    except TypeError:  # not weakly referenceable: not a KafkaProducer
        return None
    fast = _detect(producer)
    _CACHE[producer] = fast
    return fast


def _detect(producer: Any) -> FastEnqueue | None:
    """Every internal ``send`` relies on, checked by feature; None when one is missing or different."""
    if not isinstance(producer, KafkaProducer) or type(producer).send is not KafkaProducer.send:
        return None  # a subclass's own send must not be bypassed
    limit = _plain_limit(getattr(producer, "config", None))
    append = getattr(getattr(producer, "_accumulator", None), "append", None)
    wakeup = getattr(getattr(producer, "_sender", None), "wakeup", None)
    manager = getattr(producer, "_transaction_manager", _NOT_LOOKED_UP)
    if (
        limit is None
        or not isinstance(getattr(producer, "_closed", None), bool)
        or not callable(getattr(getattr(producer, "_metadata", None), "partitions_for_topic", None))
        or not (callable(append) and _append_is_mirrored(append) and callable(wakeup))
        or manager is _NOT_LOOKED_UP
    ):
        return None
    if manager is not None:
        is_transactional = getattr(manager, "is_transactional", None)
        if not callable(is_transactional) or not callable(
            getattr(manager, "maybe_add_partition_to_transaction", None)
        ):
            return None
        manager = manager if is_transactional() else None  # send adds partitions only when transactional
    return FastEnqueue(producer, append, wakeup, limit, manager)


def _plain_limit(config: Any) -> int | None:
    """``max_request_size`` when no serializer is set and the records are v2 (the bound's format)."""
    if not isinstance(config, dict) or any(
        config.get(name, _NOT_LOOKED_UP) is not None for name in ("key_serializer", "value_serializer")
    ):
        return None  # a serializer (or no such setting): send's serialization must run
    limit, api = config.get("max_request_size"), config.get("api_version")
    return limit if type(limit) is int and isinstance(api, tuple) and api >= (0, 11) else None


def _append_is_mirrored(append: Callable[..., Any]) -> bool:
    """``append(tp, timestamp_ms, key, value, headers, ..., abort_on_new_batch)``, returning
    ``(future, batch_is_full, new_batch_created, abort_for_new_batch)`` (kafka-python 3.0's)."""
    try:
        params = inspect.signature(append).parameters
    except (TypeError, ValueError):
        return False
    return tuple(params)[: len(_APPEND_PARAMS)] == _APPEND_PARAMS and "abort_on_new_batch" in params
