"""Updates stamped too far ahead of now: dead letters (``future_time``), never the item's clock.

An item's latest ``occurred_at`` orders its updates (an older one is ``out_of_order``), so one
update stamped years ahead would make every later, correct update look old: its episode would
never resolve and its history would freeze. An update whose ``occurred_at`` lies more than
``future_skew_s`` after the wall clock of the batch deciding it is refused before the detector
sees it, in ``consume`` and ``stockwatch score`` alike. The wall clock, not the record's
timestamp: a producer sets that one (CreateTime) and could push it forward with the update, or
hold it back with a wrong clock and get every correct update refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from consumer.ports import SourceRecord
from consumer.scoring.batch import Failure
from consumer.wire.dlq import DlqReason
from detection import UpdateBatch

__all__ = ["drop_future", "split_future"]


def split_future(updates: UpdateBatch, limit: float) -> tuple[list[int] | None, list[tuple[int, str]]]:
    """The rows to keep (None: all) and ``(row, reason)`` of those stamped after ``limit``."""
    ahead = updates.occurred_at > limit  # NaN (no occurred_at) is never ahead
    if not ahead.any():
        return None, []
    rejects = [(i, _reason(float(updates.occurred_at[i]), limit)) for i in np.flatnonzero(ahead).tolist()]
    return np.flatnonzero(~ahead).tolist(), rejects


def drop_future(
    updates: UpdateBatch,
    where: list[int],
    candidates: Sequence[SourceRecord],
    *,
    skew_s: float,
    now: datetime,
) -> tuple[UpdateBatch, list[int], list[Failure]]:
    """``consume``: the updates (and their candidate indices) to decide, and the dead letters of the rest."""
    keep, rejects = split_future(updates, now.timestamp() + skew_s)
    if keep is None:
        return updates, where, []
    failures: list[Failure] = [
        (where[i], 1, candidates[where[i]], DlqReason.FUTURE_TIME, reason) for i, reason in rejects
    ]
    return updates.rows(keep), [where[i] for i in keep], failures


def _reason(at: float, limit: float) -> str:
    def iso(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")

    return (
        f"future_time: occurred_at {iso(at)} is after {iso(limit)} (now plus future_skew_s): it would "
        "freeze the item's clock"
    )
