"""Group membership as the broker sees it, for the scoring loop.

* **Assignment hooks.** The source calls :meth:`Membership.on_assigned`, :meth:`~Membership.on_revoked`
  and :meth:`~Membership.on_lost` inside its ``poll`` (kafka-python: on its I/O thread while the
  loop waits in ``poll``, so no call into the consumer may block there; librdkafka: on the loop's
  thread). Whatever keeps per-partition state subscribes with :meth:`Membership.add_listener` and
  hears the same changes, revocations before assignments; a listener's ``on_revoked`` runs before
  the revoked offsets are committed (flush there what must be durable first).
* **Commit on revocation** (at-least-once): the batches in flight are settled and the
  acknowledged offsets of the revoked partitions go back to the source, which commits them before
  letting go: a scale-up re-processes nothing. Exactly-once commits inside each transaction.
* **A stale member re-joins.** Commits refused because the group went on without this member
  (:class:`~consumer.ports.StaleMemberError`), or a loop that did not run for longer than the
  session timeout (a frozen process: the group has evicted it, and what it fetched before is no
  longer its to score), make it drop its work in flight and its whole assignment and join again
  (:meth:`Membership.rejoin`), instead of scoring partitions that are no longer its own: the
  partitions it gets back start from the group's committed offsets.
* **Readiness.** ``/readyz`` says 503 while the client is not in a stable group for longer than
  ``unstable_after_s``, and while commits are refused COMMIT_FAILURES_UNREADY times in a row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from consumer.ports import DeliveryError, FencedInstanceError, Source, TopicPart
from consumer.scoring.health import HealthState
from consumer.scoring.ledger import OffsetLedger
from consumer.scoring.metrics import ConsumerMetrics

__all__ = ["COMMIT_FAILURES_UNREADY", "Membership", "PartitionHooks"]

log = logging.getLogger(__name__)

COMMIT_FAILURES_UNREADY = 3  # refused commits in a row that make /readyz say 503

Partitions = Sequence[TopicPart]


@dataclass(frozen=True, slots=True)
class PartitionHooks:
    """One subscriber's callbacks (``on_lost`` defaults to ``on_revoked``)."""

    on_assigned: Callable[[Partitions], None] | None = None
    on_revoked: Callable[[Partitions], None] | None = None
    on_lost: Callable[[Partitions], None] | None = None


class Membership:
    """The loop's side of the group: implements :class:`consumer.ports.PartitionListener`.

    ``settle`` waits for the batches in flight, counts the acknowledged ones and makes their state
    durable (the loop's; False: it is not, so nothing may be committed);
    ``forget`` drops every trace of partitions that are no longer ours (ledger, parked records).
    """

    def __init__(
        self,
        source: Source,
        ledger: OffsetLedger[Any],
        health: HealthState,
        metrics: ConsumerMetrics,
        *,
        settle: Callable[[], bool],
        forget: Callable[[Partitions], None],
        exactly_once: bool,
        unstable_after_s: float,
        session_timeout_s: float,
    ) -> None:
        self.source = source
        self.ledger = ledger
        self.health = health
        self.metrics = metrics
        self._settle = settle
        self._forget = forget
        self.exactly_once = exactly_once
        self.unstable_after_s = unstable_after_s
        self.session_timeout_s = session_timeout_s
        self._last_alive: float | None = None
        self._hooks: list[PartitionHooks] = []
        self._unstable_since: float | None = None
        self.rejoins = 0

    def add_listener(
        self,
        *,
        on_assigned: Callable[[Partitions], None] | None = None,
        on_revoked: Callable[[Partitions], None] | None = None,
        on_lost: Callable[[Partitions], None] | None = None,
    ) -> None:
        """Hear every assignment change of this member (see the module docstring for the threads)."""
        self._hooks.append(PartitionHooks(on_assigned, on_revoked, on_lost))

    # ------------------------------------------------------------------ called by the source

    def on_assigned(self, partitions: Partitions) -> None:
        """New partitions: they start from the group's committed offsets."""
        log.info("partitions assigned: %s", _names(partitions))
        for hooks in self._hooks:
            if hooks.on_assigned is not None:
                hooks.on_assigned(partitions)

    def on_revoked(self, partitions: Partitions) -> dict[TopicPart, int]:
        """The partitions go to another member: the acknowledged offsets to commit before they do."""
        if not partitions:
            return {}
        durable = self._settle()
        for hooks in self._hooks:
            if hooks.on_revoked is not None:
                hooks.on_revoked(partitions)
        offsets = {} if self.exactly_once or not durable else self.ledger.committable(set(partitions))
        self._forget(partitions)
        log.info("partitions revoked: %s", _names(partitions))
        return offsets

    def on_lost(self, partitions: Partitions) -> None:
        """Taken away without notice (the session expired): nothing of them may be committed."""
        if not partitions:
            return
        log.warning("partitions lost (the group went on without this member): %s", _names(partitions))
        self._notify_lost(partitions)
        self._forget(partitions)

    # ------------------------------------------------------------------ called by the loop

    def check(self, refusal: DeliveryError | None) -> None:
        """A commit was refused (``Committer.take_refusal``): re-join if stale, raise if fenced."""
        if isinstance(refusal, FencedInstanceError):
            raise refusal
        if refusal is not None:
            self.rejoin(refusal)

    def fenced(self, exc: BaseException) -> None:
        """Another instance took this one's ``group_instance_id``: nothing of it may be committed now."""
        log.error(
            "another instance joined the group with this one's group_instance_id (%s): this one is "
            "fenced and stops consuming; give every instance its own STOCKWATCH_GROUP_INSTANCE_ID",
            exc,
        )
        self.ledger.reset()

    def alive(self, now: float) -> bool:
        """The loop runs (every tick and after every poll); False, after a re-join, when it had not
        run for longer than the session timeout: the group has evicted this member meanwhile."""
        last, self._last_alive = self._last_alive, now
        if last is None or now - last <= self.session_timeout_s or not self.source.assignment():
            return True
        self.rejoin(f"this member did not run for {now - last:.0f}s, longer than its session timeout")
        return False

    @contextmanager
    def waiting(self, clock: Callable[[], float] | None = None) -> Iterator[None]:
        """The loop waits in a call of its own (its outputs' acknowledgements, a synchronous commit).

        Such a wait may outlast the session timeout while the broker is away, but the client kept
        the membership alive meanwhile (its heartbeats run on a thread of their own): the time spent
        in it is no freeze. Counted as one, the 10 s commit attempts of a broker outage made the
        member drop its work in flight and re-join as soon as the broker was back.
        """
        clock = clock or time.monotonic
        started = clock()
        try:
            yield
        finally:
            if self._last_alive is not None:
                now = clock()
                self._last_alive = min(now, self._last_alive + (now - started))

    def rejoin(self, reason: object) -> None:
        """This member is stale (``reason``): drop everything in flight and join again."""
        partitions = sorted(self.source.assignment() | self.ledger.known())
        if isinstance(reason, BaseException):
            reason = f"commit refused ({reason})"
        log.warning(
            "%s: the group went on without this member; dropping the work in flight of %s (it is "
            "redelivered from the last commit) and re-joining",
            reason,
            _names(partitions) or "no partitions",
        )
        self.rejoins += 1
        self.metrics.group_rejoins.inc()
        self._notify_lost(partitions)
        self.ledger.reset()
        self._forget(partitions)
        self.source.rejoin()

    def update(self, now: float, commit_failures: int) -> None:
        """What ``/readyz`` says about the membership (called every loop tick)."""
        state = self.source.group_state()
        if state == "stable":
            self._unstable_since = None
        elif self._unstable_since is None:
            self._unstable_since = now
        unstable_for = 0.0 if self._unstable_since is None else now - self._unstable_since
        problems = []
        if unstable_for >= self.unstable_after_s:
            problems.append(f"not in a stable group ({state}) for {unstable_for:.0f}s")
        if commit_failures >= COMMIT_FAILURES_UNREADY:
            problems.append(f"{commit_failures} offset commits refused in a row")
        self.health.group_problems = problems
        self.metrics.group_stable.set(1 if state == "stable" else 0)

    def _notify_lost(self, partitions: Partitions) -> None:
        for hooks in self._hooks:
            hook = hooks.on_lost or hooks.on_revoked
            if hook is not None:
                hook(partitions)


def _names(partitions: Partitions) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(partitions))
