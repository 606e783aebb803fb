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
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence

from consumer.ports import DeliveryError, FencedInstanceError, OutputFailure, StaleMemberError, TopicPart

__all__ = ["Span", "SpanDelivery"]

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

    def __init__(self, span: Span, failures: Callable[[], Sequence[OutputFailure]] = tuple) -> None:
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
