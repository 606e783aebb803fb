"""The alert-episode state machine of :func:`consumer.scoring.episodes.advance`, as one compiled loop.

Pure arithmetic on arrays, so it lives beside the decide kernel: the same warm-up
(:func:`detection.warmup.warm_up`, and the image's numba cache) compiles it before a model decides.
``consumer.scoring.episodes.advance`` stays the reference; ``tests/unit/consumer/scoring/
test_episode_kernel.py`` holds the two to the same transitions and records.

Each item's episode is one row of the eight columns (the fields of ``EPISODE_DTYPE``, in order),
updated in place; the float32 fields are rounded to float32 whenever written, as the record stores
them. A transition is written to the ``out_*`` arrays (its kind as :data:`KINDS` codes) with the
episode as it stands after the update.
"""

# ruff: noqa: PLR0917  (a numba kernel: positional arrays)
from __future__ import annotations

from typing import Final

import numpy as np
from numba import njit

__all__ = ["KINDS", "advance_rows", "warm_up_episodes"]

KINDS: Final = ("open", "escalated", "renotified", "resolved", "suppressed")  # kind codes 0..4
_OPEN, _ESCALATED, _RENOTIFIED, _RESOLVED, _SUPPRESSED = range(5)
_NONE_STATUS, _OPEN_STATUS, _SILENT_STATUS = 0, 1, 2
_MAX_U4: Final = 2**32 - 1
_MAX_U2: Final = 2**16 - 1


@njit(cache=True, nogil=True)
def advance_rows(  # type: ignore[no-untyped-def]  # noqa: ANN201
    opened,  # noqa: ANN001  # per item: the episode's columns, updated in place
    first,  # noqa: ANN001
    last_s,  # noqa: ANN001
    notified_s,  # noqa: ANN001
    occurrences,  # noqa: ANN001
    normal_run,  # noqa: ANN001
    status,  # noqa: ANN001
    max_level,  # noqa: ANN001
    item_of,  # noqa: ANN001  # per row: its item, whether anomalous, its level, event time, offset
    anomalous,  # noqa: ANN001
    levels,  # noqa: ANN001
    at,  # noqa: ANN001
    offsets,  # noqa: ANN001
    quiet,  # noqa: ANN001  # per row: an active suppression covers it
    resolve_after,  # noqa: ANN001
    renotify_after_s,  # noqa: ANN001
    out,  # noqa: ANN001  # (n, 2) int64: row, kind code
    out_ints,  # noqa: ANN001  # (n, 3) int64: opened_offset, occurrences, max level
    out_times,  # noqa: ANN001  # (n, 3) float64: first_seen, last_seen, at
):
    """Apply the rows in order; returns the number of transitions written."""
    m = 0
    for r in range(item_of.shape[0]):
        k = item_of[r]
        t = at[r]
        if not anomalous[r]:
            if status[k] == _NONE_STATUS:
                continue
            normal_run[k] = min(np.int64(normal_run[k]) + 1, _MAX_U2)
            if normal_run[k] < resolve_after:
                continue
            if status[k] == _OPEN_STATUS:
                m = _emit(
                    m,
                    r,
                    _RESOLVED,
                    k,
                    t,
                    opened,
                    first,
                    last_s,
                    occurrences,
                    max_level,
                    out,
                    out_ints,
                    out_times,
                )
            opened[k], first[k], last_s[k], notified_s[k] = 0, 0.0, 0.0, 0.0
            occurrences[k], normal_run[k], status[k], max_level[k] = 0, 0, 0, 0
            continue
        level = max(np.int64(levels[r]), 0)
        if status[k] == _NONE_STATUS:
            opened[k], first[k], last_s[k], notified_s[k] = offsets[r], t, 0.0, 0.0
            occurrences[k], normal_run[k], max_level[k] = 1, 0, level
            status[k] = _SILENT_STATUS if quiet[r] else _OPEN_STATUS
            kind = _SUPPRESSED if quiet[r] else _OPEN
            m = _emit(
                m, r, kind, k, t, opened, first, last_s, occurrences, max_level, out, out_ints, out_times
            )
            continue
        since = t - first[k]
        occurrences[k] = min(np.int64(occurrences[k]) + 1, _MAX_U4)
        normal_run[k] = 0
        last_s[k] = np.float32(max(np.float64(last_s[k]), since))
        higher = level > max_level[k]
        if higher:
            max_level[k] = level
        if status[k] != _OPEN_STATUS:
            continue
        due = renotify_after_s > 0 and since - np.float64(notified_s[k]) >= renotify_after_s
        if not (higher or due) or quiet[r]:
            continue
        notified_s[k] = np.float32(max(np.float64(notified_s[k]), since))
        kind = _ESCALATED if higher else _RENOTIFIED
        m = _emit(m, r, kind, k, t, opened, first, last_s, occurrences, max_level, out, out_ints, out_times)
    return m


@njit(cache=True, nogil=True)
def _emit(m, r, kind, k, t, opened, first, last_s, occurrences, max_level, out, out_ints, out_times):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    out[m, 0], out[m, 1] = r, kind
    out_ints[m, 0], out_ints[m, 1], out_ints[m, 2] = opened[k], occurrences[k], max_level[k]
    out_times[m, 0], out_times[m, 1], out_times[m, 2] = first[k], first[k] + np.float64(last_s[k]), t
    return m + 1


def warm_up_episodes() -> None:
    """Run the kernel once on a scratch item (open, escalate, resolve): compiled or loaded from cache."""
    cols = (np.zeros(1, np.int64), np.zeros(1, np.float64), np.zeros(1, np.float32), np.zeros(1, np.float32),
            np.zeros(1, np.uint32), np.zeros(1, np.uint16), np.zeros(1, np.uint8), np.zeros(1, np.uint8))  # fmt: skip
    n = 5
    rows = (np.zeros(n, np.intp), np.array([1, 1, 0, 0, 0], np.bool_), np.array([0, 2, -1, -1, -1], np.int8),
            np.arange(n, dtype=np.float64), np.arange(n, dtype=np.int64), np.zeros(n, np.bool_))  # fmt: skip
    out = (np.zeros((n, 2), np.int64), np.zeros((n, 3), np.int64), np.zeros((n, 3), np.float64))
    advance_rows(*cols, *rows, 3, 0.0, *out)
