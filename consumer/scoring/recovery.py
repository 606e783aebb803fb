"""How the scoring loop (:mod:`.loop`) gets back on track after a batch or a transaction fails.

* **A delivery fails** (refused at publish, or failed once settled): nothing of its batches
  counts; the state drops their changes, the source seeks back (exactly-once: to the group's
  committed offsets, the transaction was aborted) and the loop retries after the pause of
  :class:`~.retry_backoff.RetryBackoff`, ticking meanwhile. Outputs refused as such are remembered
  (:mod:`.poison`) and the retry, at once, reduces or parks them.
* **A batch cannot be decided** (the state's restore or the seed lookup is unavailable): it is read
  again after the same pause; exactly-once, the open transaction commits first.
* **A transaction's offsets are refused** (a stale or fenced member): its state changes never
  happened; the member re-joins or stops (:mod:`.membership`), with no rewind.
* **At the stop**, exactly-once: a last transaction that did not commit leaves its records to be
  redelivered (``stockwatch consume`` exits 3).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from consumer.ports import DeliveryError, FencedInstanceError, Source, StaleMemberError, TopicPart
from consumer.scoring.batch import BatchResult
from consumer.scoring.change_batch import ChangeContext
from consumer.scoring.commits import committed_or
from consumer.scoring.ledger import OffsetLedger, Settlement
from consumer.scoring.membership import Membership
from consumer.scoring.metrics import ConsumerMetrics
from consumer.scoring.poison import PoisonRecords
from consumer.scoring.retry_backoff import RetryBackoff
from consumer.scoring.stats import RunStats

__all__ = ["LoopView", "Recovery"]

log = logging.getLogger("consumer.scoring.loop")  # the loop's lines: log filters and alerts key on its name


class LoopView(Protocol):
    """What recovery reads of the loop at each call, not once: a test switches them on a built loop."""

    @property
    def state(self) -> ChangeContext | None: ...
    @property
    def exactly_once(self) -> bool: ...
    @property
    def retry_backoff_s(self) -> float: ...


class Recovery:
    """The loop's failure paths; of their state it owns only the retry's (:class:`RetryBackoff`).

    ``loop`` gives the per-item state and the delivery settings; ``stop`` ends a pause early (the
    loop's stop request); ``tick`` runs the loop's tick once a second meanwhile, so /healthz stays
    alive and /readyz reports the partitions stalled.
    """

    def __init__(
        self,
        source: Source,
        ledger: OffsetLedger[BatchResult],
        poison: PoisonRecords,
        membership: Membership,
        metrics: ConsumerMetrics,
        *,
        loop: LoopView,
        stop: threading.Event,
        tick: Callable[[], None],
    ) -> None:
        self.source = source
        self.ledger = ledger
        self.poison = poison
        self.membership = membership
        self.metrics = metrics
        self.loop = loop
        self.backoff = RetryBackoff()
        self.stop = stop
        self.tick = tick

    def acknowledged(self) -> None:
        """Batches were acknowledged: the failures in a row are over."""
        self.backoff.succeeded()

    def undecided(
        self, first: dict[TopicPart, int], exc: BaseException, stats: RunStats, *, settle: Callable[[], None]
    ) -> None:
        """The batch from ``first`` could not be decided: read it again after a pause.

        Exactly-once, ``settle`` (blocking) commits the open transaction's batches first: the rewind
        to the group's committed offsets would read them again and publish them a second time into
        it. If it fails, its own rewind reads them again, and so does this one: nothing is skipped.
        """
        targets = self.ledger.rewind_targets(first)
        if self.loop.exactly_once and self.ledger.pending:
            failures = stats.delivery_failures
            with self.membership.waiting():
                settle()
            if stats.delivery_failures == failures:
                targets = dict(first)
        self.rewind(targets, exc, stats)

    def publish_failed(
        self, result: BatchResult, first: dict[TopicPart, int], exc: DeliveryError, stats: RunStats
    ) -> None:
        """The sink refused the batch from ``first`` outright: remember what it refused, rewind, retry."""
        refused = self.poison.note(result.outputs, exc.failures)
        self.rewind(self.ledger.rewind_targets(first), exc, stats, at_once=refused)

    def settle_failed(self, settled: Settlement[BatchResult], exc: BaseException, stats: RunStats) -> None:
        """Settling met ``exc``: a transaction's offsets refused, or a delivery that failed."""
        if isinstance(exc, StaleMemberError | FencedInstanceError):
            if (state := self.loop.state) is not None:
                state.rewound(to_committed=settled.rewind)  # its state changes never happened
            self.backoff.refused()  # the transaction did not commit (a stop now exits 3)
            self.membership.check(exc)
            return
        refused = False
        for batch in settled.failed:  # remember every refused output, not only the first batch's
            error = batch.delivery.error() if batch.delivery.done() else None
            if isinstance(error, DeliveryError):
                refused = self.poison.note(batch.item.outputs, error.failures) or refused
        self.rewind(settled.rewind, exc, stats, at_once=refused)

    def rewind(
        self, first: dict[TopicPart, int], exc: BaseException, stats: RunStats, *, at_once: bool = False
    ) -> None:
        """Delivery failed: nothing of the batch counts; seek back to ``first`` and retry.

        Exactly-once goes back to the group's committed offsets instead (where known). At once when
        an output was refused as such (the next attempt reduces or parks it), else after the pause
        of :class:`RetryBackoff`.
        """
        stats.delivery_failures += 1
        self.metrics.count_delivery_failure(exc)
        if (state := self.loop.state) is not None:
            state.rewound(to_committed=first if self.loop.exactly_once else ())
        # the transaction was aborted: go back to what the group committed
        target = committed_or(self.source, first) if self.loop.exactly_once else dict(first)
        pause = self.backoff.failed(self.loop.retry_backoff_s, at_once=at_once)
        where = ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(target.items()))
        log.warning("batch not delivered (%r); rewinding %s and retrying in %.1fs", exc, where, pause)
        self.source.seek(target)
        resume = time.monotonic() + pause
        while not self.stop.is_set() and (left := resume - time.monotonic()) > 0:
            self.stop.wait(min(left, 1.0))
            self.tick()

    def last_transaction_failed(self, stats: RunStats) -> bool:
        """At the stop, exactly-once: whether the last transaction failed (its records stay open)."""
        if self.loop.exactly_once and self.backoff.failures_in_row:
            stats.final_commit, stats.final_error = False, "the last transaction did not commit"
            log.error("stopping after a failed transaction: its records are redelivered after a restart")
            return True
        return False
