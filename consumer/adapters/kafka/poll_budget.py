"""A budget on how many bytes kafka-python inflates in one poll, on top of the cap per batch.

The cap per batch (:mod:`.bounded_codecs`) alone lets one poll inflate batch after batch until it
holds ``max_poll_records`` records: 20 gzip batches of one ~60 MB value each, every one just under
the cap, made a 2.26 GB poll. So a poll may inflate at most ``budget`` bytes (the same figure as the
cap): once it returned a record, a batch that would take it past the budget is left unread, the
poll returns what it has, and the partition is fetched again from its position by the next poll,
whose first batch may always inflate up to the cap. Nothing is skipped: the position only moves
past records the poll returns. State is per thread (a poll runs its fetcher in the caller's thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["PollBudgetSpentError", "batch_limit", "counting", "inflated", "poll_scope"]


class PollBudgetSpentError(Exception):
    """The poll's inflation budget is spent: the batch is left unread (raised before it is inflated
    whole); the partition records carrying it are discarded and fetched again."""


class _PollState(threading.local):
    active = False
    inflated = 0  # bytes inflated by this thread's poll so far
    returned = 0  # records this poll is returning so far


_state = _PollState()


def poll_scope(fetched_records: Callable[..., Any]) -> Callable[..., Any]:
    """``Fetcher.fetched_records`` with a fresh budget: one call is what one poll returns."""

    def scoped(self: Any, *args: Any, **kwargs: Any) -> Any:
        _state.active, _state.inflated, _state.returned = True, 0, 0
        try:
            return fetched_records(self, *args, **kwargs)
        finally:
            _state.active = False

    return scoped


def batch_limit(cap: int, budget: int) -> tuple[int, bool]:
    """How far the next batch may inflate, and whether stopping there means "budget spent" (not a bomb).

    Raises PollBudgetSpentError when nothing is left. Outside a poll, or before the poll returned a
    record, a batch may always use the whole cap (a poll must make progress).
    """
    if not _state.active or not _state.returned:
        return cap, False
    left = budget - _state.inflated
    if left <= 0:
        raise PollBudgetSpentError(f"poll already inflated {_state.inflated} of {budget} bytes")
    return (left, True) if left < cap else (cap, False)


def inflated(n_bytes: int) -> None:
    """Count a batch's inflated bytes against the poll's budget."""
    if _state.active:
        _state.inflated += n_bytes


def counting(records: Iterator[Any]) -> Iterator[Any]:
    """``records`` (a partition's record iterator), counting each one the poll returns."""
    for record in records:
        if _state.active:
            _state.returned += 1
        yield record
