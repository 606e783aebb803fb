"""Exactly-once transactions that span several poll batches (transport-free; both sinks use it).

A transaction per batch pays its fixed round trips (offsets to the group coordinator, the commit
and its markers on every partition written) ~25 times a second at full speed. Like Kafka Streams
(``commit.interval.ms``), the transactional sinks keep one transaction open over the batches
published within ``commit_interval_ms``: each batch gets a :class:`SpanDelivery`, done once the
transaction it joined has committed or failed. The transaction commits when it is due at a
``publish``, or as soon as the loop waits for one of its batches (:meth:`SpanDelivery.wait`: at
most ``MAX_IN_FLIGHT`` batches wait unsettled, an idle poll, a revocation, shutdown). It commits
or fails whole, so every batch of a failed one fails with it and the loop rewinds them together;
each batch's error names only its own refused outputs.

:class:`TransactionSpans` is the control flow both sinks share (open, join, commit when due, fail,
discard); a sink hands it its transport's calls and its errors.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Generic, TypeVar

from consumer.ports import DeliveryError, FencedInstanceError, OutputFailure, StaleMemberError, TopicPart

__all__ = ["Span", "SpanDelivery", "TransactionSpans"]

E = TypeVar("E", bound=Exception)  # the transport's errors
Failures = Callable[[], Sequence[OutputFailure]]

Commit = Callable[
    [dict[TopicPart, int]], None
]  # sends the offsets into the transaction, commits; raises DeliveryError


class Span:
    """One open transaction: the next offsets of the batches in it, and how it ended."""

    __slots__ = ("_commit", "_outcome", "offsets", "started")

    def __init__(self, commit: Commit, *, started: float | None = None) -> None:
        self._commit = commit
        self.started = time.monotonic() if started is None else started
        self.offsets: dict[TopicPart, int] = {}
        self._outcome: DeliveryError | bool | None = None  # True: committed

    @property
    def ended(self) -> bool:
        return self._outcome is not None

    @property
    def failure(self) -> DeliveryError | None:
        return self._outcome if isinstance(self._outcome, DeliveryError) else None

    def due(self, interval_s: float, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) - self.started >= interval_s

    def add(self, offsets: Mapping[TopicPart, int]) -> None:
        """A batch joined: its offsets are committed with the transaction."""
        self.offsets.update(offsets)

    def end(self) -> None:
        """Commit now, once; a failure (already aborted by the sink) is kept as the outcome."""
        if self._outcome is None:
            try:
                self._commit(self.offsets)
            except DeliveryError as exc:
                self._outcome = exc
                return
            self._outcome = True

    def fail(self, error: DeliveryError) -> None:
        """The sink aborted the transaction (a batch's outputs were refused)."""
        if self._outcome is None:
            self._outcome = error


class SpanDelivery:
    """One batch's share of a :class:`Span` (a :class:`consumer.ports.Delivery`)."""

    __slots__ = ("_failures", "_span")

    def __init__(self, span: Span, failures: Failures = tuple) -> None:
        self._span = span
        self._failures = failures  # this batch's refused outputs, asked once the transaction failed

    def done(self) -> bool:
        return self._span.ended

    def wait(self) -> None:
        """The loop needs this batch's outcome: the transaction commits now."""
        self._span.end()

    def error(self) -> BaseException | None:
        failure = self._span.failure
        if failure is None or isinstance(
            failure, StaleMemberError | FencedInstanceError
        ):  # the member's, not a batch's
            return failure
        own = tuple(self._failures())
        if own == failure.failures:
            return failure
        mine = copy.copy(failure)  # same message and type; its failures are this batch's outputs
        mine.failures = own
        return mine


class TransactionSpans(Generic[E]):
    """A transactional sink's open :class:`Span`: opened at a publish, joined by the batches of
    ``interval_s``, committed when due or waited for, failed whole, or dropped (:meth:`discard`).

    The sink supplies its transport: ``begin`` opens a transaction, ``abort`` aborts the open one
    (nothing if there is no producer), ``recover`` makes the producer usable after ``errors`` (abort
    or replace it), ``membership`` tells a refusal of this member from other errors, and ``error``
    is the sink's own :class:`DeliveryError` (raised by its calls when it has no producer).
    """

    __slots__ = ("_abort", "_begin", "_error", "_errors", "_membership", "_recover", "_span", "interval_s")

    def __init__(
        self,
        interval_s: float,
        *,
        error: type[DeliveryError],
        errors: tuple[type[E], ...],
        begin: Callable[[], None],
        abort: Callable[[], None],
        recover: Callable[[E], None],
        membership: Callable[[E], DeliveryError | None],
    ) -> None:
        self.interval_s = interval_s
        self._error, self._errors = error, errors
        self._begin, self._abort, self._recover, self._membership = begin, abort, recover, membership
        self._span: Span | None = None  # the open transaction

    def join(
        self,
        offsets: Mapping[TopicPart, int],
        send: Callable[[], None],
        failures: Failures,
        commit: Commit,
    ) -> SpanDelivery:
        """Add a batch to the open transaction (begun here if none is): ``send`` sends its outputs
        (raises if one is refused), ``failures`` names them once refused, ``commit`` sends the
        offsets into the transaction and commits it. Never raises: a failure is in the handle."""
        span = self._span
        opening = span is None
        if span is None:
            span = self._span = Span(partial(self._end, commit))
        delivery = SpanDelivery(span, failures)
        try:
            if opening:
                self._begin()
            send()
        except self._errors as exc:
            self._span = None
            span.fail(self._aborted(exc))
            return delivery
        except self._error as exc:  # no producer
            self._span = None
            span.fail(exc)
            return delivery
        span.add(offsets)
        if span.due(self.interval_s):
            span.end()
        return delivery

    def _end(self, commit: Commit, offsets: dict[TopicPart, int]) -> None:
        """Commit the open transaction; a transport error recovers the producer and raises the
        DeliveryError its batches fail with."""
        self._span = None
        try:
            commit(offsets)
        except self._errors as exc:
            raise self._aborted(exc) from exc

    def _aborted(self, exc: E) -> DeliveryError:
        self._recover(exc)
        refused = self._membership(exc)  # the offsets' generation is stale: the member must re-join
        return refused if refused is not None else self._error(repr(exc))

    def discard(self) -> bool:
        """The loop dropped the open transaction's batches (lost partitions, a re-join): abort it
        (True: one was open)."""
        span, self._span = self._span, None
        if span is None or span.ended:
            return False
        span.fail(self._error("transaction aborted: its batches were dropped"))
        try:
            self._abort()
        except self._errors as exc:
            self._recover(exc)
        return True
