"""When the loop commits the acknowledged offsets of its :class:`OffsetLedger`, and how.

* after batches settle: every acknowledged offset so far, at most every ``interval_s`` (fewer
  commit round trips; a crash redelivers at most that much more); synchronously when asked;
* idle: synchronously, because async commits are fire-and-forget (a failure only reaches a log
  line, and offsets of a partition revoked at that moment are skipped) and with no more input no
  later commit would cover them;
* at shutdown: synchronously, waiting up to FINAL_COMMIT_WAIT_S for a rebalance in progress;
  :meth:`Committer.final` says whether it went through (``stockwatch consume`` exits 3 if not);
* first what must be durable before (``flush``: the state's changelog cache, :mod:`.state_flush`;
  a periodic commit does not wait for it: its offsets are committed once it is acknowledged);
* a refused commit is remembered and retried; refused because the group went on without this
  member (:class:`StaleMemberError`, :class:`FencedInstanceError`) it is handed to the loop
  (:meth:`Committer.take_refusal`), which re-joins (or stops) instead of scoring on.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from consumer.ports import DeliveryError, FencedInstanceError, Sink, Source, StaleMemberError, TopicPart
from consumer.scoring.ledger import OffsetLedger
from consumer.scoring.metrics import ConsumerMetrics

if TYPE_CHECKING:
    from consumer.scoring.state_flush import StateFlush

__all__ = ["FINAL_COMMIT_WAIT_S", "LOST_PARTITIONS_AFTER_S", "Committer", "committed_or"]

log = logging.getLogger(__name__)

FINAL_COMMIT_WAIT_S = 15.0  # shutdown waits this long for a rebalance to let the last commit through
LOST_PARTITIONS_AFTER_S = 1.0  # settled partitions still not assigned after this long went elsewhere


class Committer:
    """Commits what the ledger says may be committed (exactly-once: the sink's commit is a no-op)."""

    def __init__(
        self,
        sink: Sink,
        source: Source,
        ledger: OffsetLedger[Any],
        metrics: ConsumerMetrics,
        *,
        interval_s: float,
        flush: StateFlush | None = None,
    ) -> None:
        self.sink = sink
        self.source = source
        self.ledger = ledger
        self.metrics = metrics
        self.interval_s = interval_s
        self._failed = False
        self._next = 0.0
        self.failures_in_row = 0  # refused commits since the last one that went through
        self._refusal: DeliveryError | None = None
        self.flush = flush  # what must be durable before offsets are committed (the state's changelog)
        self._after_flush: dict[TopicPart, int] | None = None  # offsets waiting for the flush in flight

    def take_refusal(self) -> DeliveryError | None:
        """The membership refusal (stale or fenced member) of a commit since the last call, if any."""
        refusal, self._refusal = self._refusal, None
        return refusal

    def after_settle(self, acked: bool, *, sync: bool) -> None:
        """Batches were (``acked``) or may have been settled: commit if due, or retry a refused one."""
        if self._after_flush is not None and self.flush is not None:
            flushed = self.flush.done(block=sync)
            if flushed is None:
                return  # not acknowledged yet: no other commit meanwhile
            offsets, self._after_flush = self._after_flush, None
            if not flushed:
                self._refused()
            else:
                self._commit(offsets, sync=sync)
        if acked and (sync or time.monotonic() >= self._next):
            self._next = time.monotonic() + self.interval_s
            self.commit(self.ledger.committable(), sync=sync)
        elif self._failed and self.ledger.committable() and not self.ledger.pending:
            self.commit(self.ledger.committable(), sync=False)

    def idle(self) -> None:
        """No input: make sure the acknowledged offsets are committed, synchronously."""
        self.commit(self.ledger.committable(), sync=True)

    def commit(self, offsets: dict[TopicPart, int], *, sync: bool) -> bool:
        """Commit acknowledged offsets; a refusal is remembered and retried, never fatal."""
        if offsets and self.flush is not None:
            if sync or self.flush.pending:
                if not self.flush_now():
                    self._refused()
                    return False
            else:
                self.flush.start()
                flushed = self.flush.done(block=False)
                if flushed is None:
                    self._after_flush = offsets  # committed once the flush is acknowledged
                    return False
                if not flushed:
                    self._refused()
                    return False
        return self._commit(offsets, sync=sync)

    def flush_now(self) -> bool:
        """Write the state's cached changelog records and wait (revocation, sync commits)."""
        self._after_flush = None  # the commit after this one covers its offsets
        return self.flush is None or self.flush.now()

    def _refused(self) -> None:
        self.failures_in_row += 1
        self._failed = True

    def _commit(self, offsets: dict[TopicPart, int], *, sync: bool) -> bool:
        try:
            self.sink.commit(offsets, self.source, sync=sync)
        except DeliveryError as exc:
            self.failures_in_row += 1
            if isinstance(exc, StaleMemberError | FencedInstanceError):
                self._refusal = exc
            elif not self._failed:
                log.warning("offset commit refused (%r); retrying after the next poll", exc)
            self._failed = True
            return False
        self._failed = False
        self.failures_in_row = 0
        self.ledger.committed(offsets, sync=sync)
        self.metrics.commits.inc()
        if self.flush is not None:
            self.flush.committed()
        return True

    def final(self) -> bool:
        """At shutdown, after every acknowledgement: one synchronous commit of what is still ours.

        Async commits may still be in flight or have been refused. During a rebalance the
        partitions are not assigned (a commit would skip them silently) or the broker refuses the
        commit: polls complete the rebalance (nothing fetched is used), for at most
        FINAL_COMMIT_WAIT_S. The offsets already committed are committed again: a member the
        group no longer knows finds out here. False when the commit did not go through.
        """
        started = time.monotonic()
        while settled := self.ledger.committable():
            mine = self.ledger.committable(self.source.assignment())
            waited = time.monotonic() - started
            # All of them ours: commit. Some ours for a while: the others went to another member
            # in a rebalance (it resumes from their committed offsets); commit ours.
            if (len(mine) == len(settled) or (mine and waited >= LOST_PARTITIONS_AFTER_S)) and self.commit(
                mine, sync=True
            ):
                if len(mine) < len(settled):
                    lost = sorted(set(settled) - set(mine))
                    log.info("partitions %s are no longer ours; their new owner resumes them", lost)
                return True
            refusal = self.take_refusal()
            if refusal is not None:
                log.error(
                    "final commit refused: this member is no longer in the group (%s); the records "
                    "processed since the last commit will be processed again",
                    refusal,
                )
                return False
            if waited >= FINAL_COMMIT_WAIT_S:
                log.error(
                    "final commit not possible within %.0fs (a rebalance did not complete); the records "
                    "processed since the last commit will be processed again",
                    FINAL_COMMIT_WAIT_S,
                )
                return False
            self.source.pause_all()
            self.source.poll(100, 1)
        return True


def committed_or(source: Source, first: dict[TopicPart, int]) -> dict[TopicPart, int]:
    """The group's committed offset of each partition of ``first``, else its offset in ``first``."""
    target = dict(first)
    try:
        for tp, offset in source.committed(list(first)).items():
            if offset is not None:
                target[tp] = offset
    except Exception as exc:  # the batch start is the committed offset anyway
        log.warning("could not read committed offsets (%r); rewinding to the batch start", exc)
    return target
