"""Which restored item records are states StockWatch could have written (a changelog is writable by others).

A restore trusts the changelog's bytes; a record with NaN or infinite numbers (forged, or a bug)
would otherwise become an item's baseline: the kernel (:mod:`detection.decide_kernel`) compares
updates with it, carries NaN on in the EWMAs, and an episode time no datetime holds makes the
episode's events raise. :func:`possible` says, per record, whether every number is one the
writers can produce (a record that is not is dropped by the restore: its item starts unknown).

What the writers produce (the kernel and :mod:`detection.change_features`, the same since the
first changelog; inputs are checked by :mod:`detection.items` / :mod:`detection.updates`):

* ``stock``, ``min``, ``max``, ``price``: an accepted update's numbers, each finite and within
  +-MAX_MAGNITUDE (an update missing one is merged onto the record, an incomplete one never
  stored); ``left_stock``: a former ``stock``, or NaN (none yet);
* ``ref_price``: ``max(price, 1e-4)`` or a decayed ``ref * 0.99`` -> in (0, MAX_MAGNITUDE];
  ``usual_level``: an EWMA of stocks -> within +-MAX_MAGNITUDE; ``usual_drop``, ``usual_rise``:
  ``>= 1`` at first, then EWMAs of positive stock changes (at most 2 x MAX_MAGNITUDE) -> in
  [0, 2 x MAX_MAGNITUDE]; ``usual_gap``: 0 or an EWMA of gaps >= 0 -> finite, >= 0 (times had no
  range limit before 2026-12-02, so no upper bound); float32 rounding keeps each bound;
* ``last_time``: NaN (no time given yet) or a finite time (no range: see ``usual_gap``);
* the episode: ``status`` 0-2 (:class:`~consumer.scoring.episodes.Status`), ``max_level`` 0-3
  (a level index), ``first_seen`` an event time in [EARLIEST_TIME, LATEST_TIME] (0 when none is
  open), ``last_seen_s`` and ``notified_s`` ``max(0, t - first_seen)`` of such times (float32).

Integer fields (``group``, ``n_updates`` with its flag bits, the counters, ``opened_offset``,
``occurrences``, ``normal_run``) take any value: every one is read safely.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from consumer.scoring.episodes import LEVEL_NAMES, Status
from detection.items import EARLIEST_TIME, LATEST_TIME, MAX_MAGNITUDE

__all__ = ["possible"]

Records = npt.NDArray[np.void]
BoolArray = npt.NDArray[np.bool_]

_M: Final = MAX_MAGNITUDE
_F4_MAX: Final = float(np.finfo(np.float32).max)
_F8_MAX: Final = float(np.finfo(np.float64).max)
_LEAST_F4: Final = float(np.nextafter(np.float32(0), np.float32(1)))  # ref_price > 0
# the longest span between two valid times, as the float32 field may round it (up)
_SPAN: Final = float(np.nextafter(np.float32(LATEST_TIME - EARLIEST_TIME), np.float32(np.inf)))
# (field, least, most, NaN allowed); every bound is exact in its field's type, or rounds inwards
_RANGES: Final = (
    ("stock", -_M, _M, False), ("min", -_M, _M, False), ("max", -_M, _M, False), ("price", -_M, _M, False),
    ("ref_price", _LEAST_F4, _M, False), ("usual_drop", 0.0, 2 * _M, False),
    ("usual_rise", 0.0, 2 * _M, False), ("usual_level", -_M, _M, False), ("usual_gap", 0.0, _F4_MAX, False),
    ("last_time", -_F8_MAX, _F8_MAX, True), ("left_stock", -_M, _M, True),
    ("first_seen", EARLIEST_TIME, LATEST_TIME, False), ("last_seen_s", 0.0, _SPAN, False),
    ("notified_s", 0.0, _SPAN, False),
)  # fmt: skip
_CODES: Final = (("status", int(max(Status))), ("max_level", len(LEVEL_NAMES) - 1))
_CHUNK: Final = 16_384  # records per pass (~1.8 MB): the dozens of passes over a chunk stay in cache


def possible(records: Records) -> BoolArray:
    """Per record (ITEM_DTYPE): could StockWatch have written it? (See the module docstring.)"""
    n = records.shape[0]
    ok = np.ones(n, np.bool_)
    scratch = np.empty(min(n, _CHUNK), np.bool_)
    for start in range(0, n, _CHUNK):  # a loop over chunks, not rows: ~60 per million records
        chunk = records[start : start + _CHUNK]
        out, tmp = ok[start : start + _CHUNK], scratch[: chunk.shape[0]]
        for name, least, most, nan_ok in _RANGES:
            values = chunk[name]
            if nan_ok:  # NaN compares False both ways: only a number out of range fails
                np.less(values, least, out=tmp)
                np.greater(values, most, out=tmp, where=~tmp)
                np.logical_not(tmp, out=tmp)
                out &= tmp
            else:  # NaN fails both comparisons
                np.greater_equal(values, least, out=tmp)
                out &= tmp
                np.less_equal(values, most, out=tmp)
                out &= tmp
        for name, most in _CODES:
            np.less_equal(chunk[name], most, out=tmp)
            out &= tmp
    return ok
