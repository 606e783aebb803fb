"""Change features: how an update moves an item relative to its own history and its peers.

All features are dimensionless (logs of ratios, robust z-scores), so fasteners at 10,000 units
and TVs at 20 units land on one scale and one forest serves every category. Row ``i`` compares
the merged new state with the item's last accepted state (:mod:`detection.item_state`)::

    stock_vs_max     log1p(stock / scale)            scale = max(prev max, prev min, 1)
    stock_step       log((stock + c) / (prev + c))   c = 5 % of scale + 1 (damps tiny stocks)
    drop_vs_usual    log1p(decrease / usual decrease of this item)
    rise_vs_usual    log1p(increase / usual receipt of this item)   (returns do not teach it)
    price_step       log(price / previous price)
    price_vs_ref     log(price / the item's regular price)
    price_vs_peers   (log price - group median) / group spread   (0 without peer statistics)
    min_step         log((min + 1) / (prev min + 1))
    max_step         log((max + 1) / (prev max + 1))
    min_vs_max       min / max(max, 1)
    gap_vs_usual     log((gap + 60 s) / (usual gap + 60 s))     (0 without times)

Every value is clipped to +/-:data:`CLIP` so that no input makes a feature infinite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from detection.item_state import COUNT_MASK, STATE_DTYPE, StateRows

__all__ = ["CHANGE_FEATURE_NAMES", "CLIP", "Merged", "advance", "change_features", "initial_states", "merge"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

CHANGE_FEATURE_NAMES: Final[tuple[str, ...]] = (
    "stock_vs_max", "stock_step", "drop_vs_usual", "rise_vs_usual", "price_step", "price_vs_ref",
    "price_vs_peers", "min_step", "max_step", "min_vs_max", "gap_vs_usual",
)  # fmt: skip
CLIP: Final = 12.0
PRICE_FLOOR: Final = 1e-4  # log of a zero price stays finite; rules judge non-positive prices
ALPHA_MIN: Final = 0.1  # EWMA weight once an item has a history (~10 updates of memory)
REF_PRICE_DECAY: Final = 0.99
"""The regular price is the upper envelope of accepted prices, decaying 1 % per update: a promotion
(a temporary cut) leaves it in place, a permanent price cut is followed within some updates."""
LEVEL_ALPHA: Final = 0.1
RETURN_DROPS: Final = 3.0
RECEIPT_SHARE: Final = 0.5
"""A rise of at most RETURN_DROPS usual decreases and under RECEIPT_SHARE of a usual rise is a
customer return (about one sale), not a receipt: it does not teach the item's usual rise."""


@dataclass(frozen=True, slots=True)
class Merged:
    """New numbers, time and group of ``n`` rows: an update as sent (NaN = absent) or merged."""

    stock: FloatArray
    min: FloatArray
    max: FloatArray
    price: FloatArray
    time: FloatArray  # occurred_at, NaN when absent
    group: npt.NDArray[np.uint32]  # 0 = take the previous group


def merge(prev: StateRows, known: BoolArray, update: Merged) -> tuple[Merged, BoolArray]:
    """Absent (NaN) fields of ``update`` take the previous value; returns the merge and the rows
    still incomplete (an unknown item without all four numbers)."""
    cols = []
    for name, new in (
        ("stock", update.stock),
        ("min", update.min),
        ("max", update.max),
        ("price", update.price),
    ):
        old = np.where(known, prev[name], np.nan)
        cols.append(np.where(np.isnan(new), old, new))
    incomplete = np.isnan(cols[0]) | np.isnan(cols[1]) | np.isnan(cols[2]) | np.isnan(cols[3])
    g = np.where(update.group != 0, update.group, np.where(known, prev["group"], 0)).astype(np.uint32)
    return Merged(cols[0], cols[1], cols[2], cols[3], update.time, g), incomplete


def initial_states(m: Merged) -> StateRows:
    """Baseline records for items seen for the first time (snapshot or stream), with priors.

    Priors until the item has a history: a usual decrease of 5 % of its max level and a usual
    increase of 70 % of its min-max range (a restock), its price as the regular price.
    """
    rows = np.zeros(m.stock.shape[0], STATE_DTYPE)
    scale = np.maximum(np.maximum(m.max, m.min), 1.0)
    rows["stock"], rows["min"], rows["max"], rows["price"] = m.stock, m.min, m.max, m.price
    rows["ref_price"] = np.maximum(m.price, PRICE_FLOOR)
    rows["usual_drop"] = np.maximum(0.05 * scale, 1.0)
    rows["usual_rise"] = np.maximum(0.7 * np.maximum(m.max - m.min, 0.3 * scale), 1.0)
    rows["usual_level"] = m.stock
    rows["last_time"] = m.time
    rows["group"] = m.group
    rows["left_stock"] = np.nan
    return rows


def change_features(
    prev: StateRows, m: Merged, peer_median: FloatArray, peer_spread: FloatArray
) -> FloatArray:
    """The (n, 11) feature matrix of :data:`CHANGE_FEATURE_NAMES` (see the module docstring)."""
    n = m.stock.shape[0]
    out = np.empty((n, len(CHANGE_FEATURE_NAMES)), dtype=np.float64)
    s0, s1 = np.maximum(prev["stock"], 0.0), np.maximum(m.stock, 0.0)
    scale = np.maximum(np.maximum(prev["max"], prev["min"]), 1.0)
    c = 0.05 * scale + 1.0
    delta = s1 - s0
    log_p1 = np.log(np.maximum(m.price, PRICE_FLOOR))
    with np.errstate(invalid="ignore"):
        out[:, 0] = np.log1p(s1 / scale)
        out[:, 1] = np.log((s1 + c) / (s0 + c))
        out[:, 2] = np.log1p(np.maximum(-delta, 0.0) / np.maximum(prev["usual_drop"], 0.5))
        out[:, 3] = np.log1p(np.maximum(delta, 0.0) / np.maximum(prev["usual_rise"], 0.5))
        out[:, 4] = log_p1 - np.log(np.maximum(prev["price"], PRICE_FLOOR))
        out[:, 5] = log_p1 - np.log(np.maximum(prev["ref_price"].astype(np.float64), PRICE_FLOOR))
        out[:, 6] = np.where(np.isnan(peer_median), 0.0, (log_p1 - peer_median) / peer_spread)
        out[:, 7] = np.log((np.maximum(m.min, 0.0) + 1.0) / (np.maximum(prev["min"], 0.0) + 1.0))
        out[:, 8] = np.log((np.maximum(m.max, 0.0) + 1.0) / (np.maximum(prev["max"], 0.0) + 1.0))
        out[:, 9] = np.maximum(m.min, 0.0) / np.maximum(m.max, 1.0)
        gap = m.time - prev["last_time"]
        usual = prev["usual_gap"].astype(np.float64)
        known_gap = ~np.isnan(gap) & (usual > 0)
        out[:, 10] = np.where(known_gap, np.log((np.maximum(gap, 0.0) + 60.0) / (usual + 60.0)), 0.0)
    np.clip(out, -CLIP, CLIP, out=out)
    return np.nan_to_num(out, nan=0.0, copy=False)


def advance(prev: StateRows, m: Merged, accepted: BoolArray, rebase: BoolArray | None = None) -> StateRows:
    """The next records: accepted rows take the new state and learn from it; the others only count.

    A flagged update never becomes the baseline (the next normal update must not look like a jump
    back), but its flag is counted (``n_flagged``, ``flag_run``). ``rebase`` rows (flagged, accepted
    as the new normal of a new item's provisional state) take their price as the regular price.
    """
    new = prev.copy()
    a = accepted
    s0, s1 = prev["stock"], m.stock
    count = (prev["n_updates"] & np.uint32(COUNT_MASK)).astype(np.float64)
    alpha = np.maximum(ALPHA_MIN, 1.0 / (count + 2.0))
    drop, rise = np.maximum(s0 - s1, 0.0), np.maximum(s1 - s0, 0.0)
    ud, ur = prev["usual_drop"], prev["usual_rise"]
    new["usual_drop"] = np.where(a & (drop > 0), ud + alpha * (drop - ud), ud)
    ud64, ur64 = ud.astype(np.float64), ur.astype(np.float64)
    receipt = (rise > RETURN_DROPS * ud64) | (rise >= RECEIPT_SHARE * ur64)
    new["usual_rise"] = np.where(a & (rise > 0) & receipt, ur + alpha * (rise - ur), ur)
    new["usual_level"] = np.where(
        a, prev["usual_level"] + LEVEL_ALPHA * (s1 - prev["usual_level"]), prev["usual_level"]
    )
    ref = np.maximum(prev["ref_price"].astype(np.float64), PRICE_FLOOR)
    with np.errstate(invalid="ignore"):
        gap = m.time - prev["last_time"]
    new["ref_price"] = np.where(a & (m.price > 0), np.maximum(m.price, ref * REF_PRICE_DECAY), ref)
    if rebase is not None:
        new["ref_price"] = np.where(
            rebase & (m.price > 0), np.maximum(m.price, PRICE_FLOOR), new["ref_price"]
        )
    ug = prev["usual_gap"]
    has_gap = a & ~np.isnan(gap) & (gap >= 0)
    new["usual_gap"] = np.where(has_gap, np.where(ug > 0, ug + 0.2 * (gap - ug), gap), ug)
    new["last_time"] = np.where(a, np.fmax(prev["last_time"], m.time), prev["last_time"])
    new["left_stock"] = np.where(a & (s1 != s0), s0, prev["left_stock"])
    for name, col in (("stock", m.stock), ("min", m.min), ("max", m.max), ("price", m.price)):
        new[name] = np.where(a, col, prev[name])
    new["group"] = np.where(a, m.group, prev["group"])
    new["n_updates"] = prev["n_updates"] + a
    new["n_flagged"] = np.minimum(prev["n_flagged"].astype(np.int64) + ~a, 65535)
    new["flag_run"] = np.where(a, 0, np.minimum(prev["flag_run"].astype(np.int64) + 1, 65535))
    return new
