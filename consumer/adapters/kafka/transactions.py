"""kafka-python's transactional calls, each bounded in time.

kafka-python (3.0.x) waits for ``send_offsets_to_transaction``, ``commit_transaction`` and
``abort_transaction`` without a timeout, and two of its states never end that wait:

* a produce error that turns the transaction abortable while ``commit_transaction`` waits for
  the last batches: the I/O thread aborts the batches left in the same pass, then sleeps in its
  poll (up to ``metadata_max_age_ms``) instead of failing the pending EndTxn request — nothing
  wakes it, the caller waits on;
* a record the broker refused still advanced the partition's sequence number: the next
  transaction's batch to that partition gets OUT_OF_ORDER_SEQUENCE_NUMBER, the producer bumps its
  epoch (KIP-360) in the middle of the commit, forgets the transaction's partitions, and the
  EndTxn waits for batches that can no longer be sent (the I/O thread spins at full CPU).

So each call here enqueues the request as the producer's own method does, then waits in short
slices, waking the I/O thread at each one (which ends the first case at once), and gives up at a
deadline (the second case) or soon after :meth:`Deadlines.interrupt`. The caller then replaces
the producer: ``init_transactions`` with the same transactional id fences it and aborts its
open transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

CALL_TIMEOUT_S = 20.0  # one transactional call; the member's max.poll.interval is far longer
STOP_GRACE_S = 3.0  # after a stop request, a call still waits this long (a commit about to finish)
_SLICE_S = 0.05  # how often a waiting call wakes the producer's I/O thread


class TransactionStuckError(Exception):
    """A transactional call did not finish in time; the producer must be replaced."""


def _internals(producer: Any) -> tuple[Any, Any]:
    manager = getattr(producer, "_transaction_manager", None)
    sender = getattr(producer, "_sender", None)
    if manager is None or sender is None:  # no public accessor: kafka-python changed its internals
        raise TransactionStuckError("this kafka-python producer has no transaction manager or I/O thread")
    return manager, sender


@dataclass
class Deadlines:
    """The time limits of the calls on one producer, and the stop request that shortens them."""

    call_timeout_s: float = CALL_TIMEOUT_S
    stop_grace_s: float = STOP_GRACE_S
    _interrupted_at: float | None = field(default=None, repr=False)

    def interrupt(self) -> None:
        """The service is stopping: calls give up ``stop_grace_s`` from now (signal-safe: one store)."""
        self._interrupted_at = time.monotonic()

    @property
    def interrupted(self) -> bool:
        return self._interrupted_at is not None

    def _deadline(self, started: float) -> float:
        deadline = started + self.call_timeout_s
        if self._interrupted_at is not None:
            deadline = min(deadline, self._interrupted_at + self.stop_grace_s)
        return deadline

    def wait(self, producer: Any, result: Any, what: str) -> None:
        """Wait for a transactional request's result; raises its error, or TransactionStuckError."""
        _, sender = _internals(producer)
        started = time.monotonic()
        sender.wakeup()
        while not result.wait(timeout_ms=_SLICE_S * 1000):  # raises the request's error once failed
            if time.monotonic() >= self._deadline(started):
                cause = "the service is stopping" if self.interrupted else f"{self.call_timeout_s:g} s passed"
                raise TransactionStuckError(f"{what} did not finish ({cause})")
            sender.wakeup()  # kafka-python may sleep with the request ready to complete or fail

    def send_offsets(self, producer: Any, offsets: Any, group_metadata: Any) -> None:
        manager, _ = _internals(producer)
        self.wait(producer, manager.send_offsets_to_transaction(offsets, group_metadata), "send_offsets")

    def commit(self, producer: Any) -> None:
        manager, _ = _internals(producer)
        self.wait(producer, manager.begin_commit(), "commit_transaction")

    def abort(self, producer: Any) -> None:
        manager, _ = _internals(producer)
        self.wait(producer, manager.begin_abort(), "abort_transaction")
