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

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np

from consumer.ports import SourceRecord
from consumer.scoring.batch import Failure
from consumer.scoring.state.item_ids import Hashes
from consumer.scoring.state.seeds import Seeds
from consumer.wire.dlq import DlqReason
from detection import UpdateBatch

log = logging.getLogger(__name__)

__all__ = ["FutureSafeSeeds", "drop_future", "split_future", "untime_future"]


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


def untime_future(seeds: UpdateBatch, limit: float) -> tuple[UpdateBatch, int]:
    """Seed states (the inventory, ``--baseline``) stamped after ``limit`` lose their time, and how many.

    A seed is not refused like an update (it is the item's only known state): its numbers stay, but
    with no time its item's next update is not judged against a clock set years ahead.
    """
    ahead = seeds.occurred_at > limit  # NaN (no occurred_at) is never ahead
    n = int(np.count_nonzero(ahead))
    if not n:
        return seeds, 0
    return dataclasses.replace(seeds, occurred_at=np.where(ahead, np.nan, seeds.occurred_at)), n


class FutureSafeSeeds:
    """``consume``'s inventory seeds through :func:`untime_future` (a WARNING per batch that had any)."""

    def __init__(self, seeds: Seeds, skew_s: float, clock: Callable[[], float] = time.time) -> None:
        self._seeds, self._skew_s, self._clock = seeds, skew_s, clock

    def prepare(self, group_field: str, tick: Callable[[], None]) -> None:
        self._seeds.prepare(group_field, tick)

    def retire(self, hashes: Hashes) -> None:
        self._seeds.retire(hashes)

    def invalidate(self) -> None:
        self._seeds.invalidate()

    def seed(self, item_ids: Sequence[str]) -> UpdateBatch:
        batch, n = untime_future(self._seeds.seed(item_ids), self._clock() + self._skew_s)
        if n:
            log.warning(
                "%d inventory seed(s) stamped more than future_skew_s ahead start with no occurred_at "
                "(e.g. item %r)",
                n,
                batch.item_ids[int(np.flatnonzero(np.isnan(batch.occurred_at))[0])][:200],
            )
        return batch


def _reason(at: float, limit: float) -> str:
    def iso(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")

    return (
        f"future_time: occurred_at {iso(at)} is after {iso(limit)} (now plus future_skew_s): it would "
        "freeze the item's clock"
    )
