"""The at-least-once bookkeeping of the scoring loop: what may be committed, and where to rewind.

Pure (no Kafka, no clock of its own): the loop records every published batch with its first and
"after" offsets per partition and its delivery handle; :meth:`OffsetLedger.settle` settles
acknowledged batches strictly in publish order, so the offsets it offers for a commit never pass
a batch whose outputs are not all acknowledged. A failed delivery hands back the failed batches
and the rewind targets: the oldest unsettled offset of each partition. Partitions revoked from
this member are forgotten (never committed again, even if they come back later with a new
owner's commits in between), and commits per partition only ever move forward.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from consumer.ports import Delivery, TopicPart

__all__ = ["REVOKED_AFTER_S", "OffsetLedger", "Pending", "Settlement"]

T = TypeVar("T")

# A partition absent from a non-empty assignment was revoked; absent from an empty one (an eager
# rebalance in progress) it may come back, so it is forgotten only after this long.
REVOKED_AFTER_S = 1.0


@dataclass(slots=True)
class Pending(Generic[T]):
    """A published batch whose offsets may be committed once its outputs are acknowledged."""

    first: dict[TopicPart, int]
    after: dict[TopicPart, int]
    delivery: Delivery
    item: T


@dataclass(slots=True)
class Settlement(Generic[T]):
    """What one :meth:`OffsetLedger.settle` did."""

    acked: list[T] = field(default_factory=list)  # newly acknowledged batches, in order
    error: BaseException | None = None  # the failure of the oldest unacknowledged batch
    failed: list[Pending[T]] = field(default_factory=list)  # it and every later batch (all dropped)
    rewind: dict[TopicPart, int] = field(default_factory=dict)  # oldest unsettled offset per partition


class OffsetLedger(Generic[T]):
    """Published batches in order, the acknowledged offsets, and what the commits covered."""

    def __init__(self) -> None:
        self._pending: deque[Pending[T]] = deque()
        self._settled: dict[TopicPart, int] = {}  # next offset after the acknowledged prefix
        self._committed: dict[TopicPart, int] = {}  # what the commits so far covered
        self._synced: dict[TopicPart, int] = {}  # what the last synchronous commit covered
        self._missing_since: dict[TopicPart, float] = {}

    # ------------------------------------------------------------------ batches

    def record(
        self, first: Mapping[TopicPart, int], after: Mapping[TopicPart, int], delivery: Delivery, item: T
    ) -> None:
        """A batch was published: its offsets count once its delivery is acknowledged."""
        self._pending.append(Pending(dict(first), dict(after), delivery, item))

    @property
    def pending(self) -> list[T]:
        """The unsettled batches' items, oldest first."""
        return [p.item for p in self._pending]

    def settle(self, *, block: bool, max_pending: int) -> Settlement[T]:
        """Settle acknowledged batches in order.

        Waits for the oldest batch while more than ``max_pending`` are unsettled (for all of them
        when ``block``). A failed delivery drops it and every later batch (their outputs are
        produced again after the rewind) and returns the rewind targets.
        """
        out: Settlement[T] = Settlement()
        while self._pending:
            head = self._pending[0]
            if not head.delivery.done():
                if not block and len(self._pending) <= max_pending:
                    break
                head.delivery.wait()
            error = head.delivery.error()
            if error is not None:
                out.error, out.rewind, out.failed = error, self.rewind_targets(), list(self._pending)
                self._pending.clear()
                return out
            self._pending.popleft()
            for tp, offset in head.after.items():
                self._settled[tp] = max(offset, self._settled.get(tp, offset))
            out.acked.append(head.item)
        return out

    def rewind_targets(self, first: Mapping[TopicPart, int] | None = None) -> dict[TopicPart, int]:
        """The oldest unsettled offset per partition: of the pending batches, then of ``first``."""
        targets: dict[TopicPart, int] = {}
        for batch in self._pending:
            for tp, offset in batch.first.items():
                targets[tp] = min(offset, targets.get(tp, offset))
        for tp, offset in (first or {}).items():
            targets[tp] = min(offset, targets.get(tp, offset))
        return targets

    # ------------------------------------------------------------------ commits

    def committable(self, assigned: Set[TopicPart] | None = None) -> dict[TopicPart, int]:
        """The acknowledged offsets (of ``assigned`` partitions only, when given)."""
        if assigned is None:
            return dict(self._settled)
        return {tp: o for tp, o in self._settled.items() if tp in assigned}

    def committed(self, offsets: Mapping[TopicPart, int], *, sync: bool) -> None:
        """A commit of ``offsets`` went through."""
        for tp, offset in offsets.items():
            self._committed[tp] = max(offset, self._committed.get(tp, offset))
        if sync:
            self._synced = dict(offsets)

    @property
    def last_committed(self) -> dict[TopicPart, int]:
        """What the commits so far covered, per partition."""
        return dict(self._committed)

    def needs_sync(self, assigned: Set[TopicPart] | None = None) -> bool:
        """Whether acknowledged offsets exist that no synchronous commit covered yet."""
        return bool(self._settled) and self.committable(assigned) != self._synced

    def uncommitted(self) -> set[TopicPart]:
        """Partitions with records polled (pending or acknowledged) beyond what was committed."""
        out = {tp for tp, o in self._settled.items() if o > self._committed.get(tp, -1)}
        for batch in self._pending:
            out.update(batch.first)
        return out

    # ------------------------------------------------------------------ rebalances

    def retain(self, assigned: Set[TopicPart], now: float) -> list[TopicPart]:
        """Forget the partitions revoked from this member (see REVOKED_AFTER_S); returns them."""
        known = self.known()
        gone = []
        for tp in known - assigned:
            since = self._missing_since.setdefault(tp, now)
            if assigned or now - since >= REVOKED_AFTER_S:
                gone.append(tp)
        for tp in assigned:
            self._missing_since.pop(tp, None)
        if gone:
            self.forget(gone)
        return gone

    def known(self) -> set[TopicPart]:
        """Every partition with an acknowledged offset or a batch in flight."""
        return set(self._settled) | {tp for b in self._pending for tp in b.first}

    def reset(self) -> list[TopicPart]:
        """Drop everything, batches in flight included (a stale member); returns the partitions known."""
        known = sorted(self.known())
        self._pending.clear()
        self.forget(known)
        return known

    def forget(self, partitions: Iterable[TopicPart]) -> None:
        """Drop every trace of ``partitions``: their offsets are never committed by this member."""
        for tp in partitions:
            self._settled.pop(tp, None)
            self._committed.pop(tp, None)
            self._synced.pop(tp, None)
            self._missing_since.pop(tp, None)
            for batch in self._pending:
                batch.first.pop(tp, None)
                batch.after.pop(tp, None)
