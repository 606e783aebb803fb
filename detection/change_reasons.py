"""Planner-readable reasons for a change: phrased against the item's own history and its peers.

Each concern (stock level, stock movement, price, levels, timing) is reported when its feature
is far from a normal update's (:data:`FAR`), largest first, at most :data:`MAX_REASONS`; the
timing is context only (it has no hull penalty) and always comes after the others::

    stock 1,440 is 12x this item's max level 120 (usually ~95)
    stock fell from 800 to 0 (-800), 40x this item's usual decrease of ~20
    price 199.90 is 10.0x the previous 19.99 (regular ~19.99; group median 21.00)
    price 2,000.00 is 66x its group's median 30.47
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["FAR", "MAX_REASONS", "change_reasons", "reasons_and_context", "reasons_of_row"]

FAR: Final = {"stock_vs_max": math.log1p(1.5), "drop_vs_usual": math.log1p(6.0),
              "rise_vs_usual": math.log1p(2.5), "price_step": math.log(1.5),
              "price_vs_peers": 3.0, "level_step": math.log(1.5), "gap_vs_usual": math.log(20.0)}  # fmt: skip
MAX_REASONS: Final = 3
_STOCK_VS_MAX, _DROP, _RISE = FAR["stock_vs_max"], FAR["drop_vs_usual"], FAR["rise_vs_usual"]
_PRICE_STEP, _PRICE_VS_PEERS, _LEVEL_STEP, _GAP = (FAR["price_step"], FAR["price_vs_peers"], FAR["level_step"],
                                                   FAR["gap_vs_usual"])  # fmt: skip


def change_reasons(
    features: npt.NDArray[np.float64],
    baseline: Mapping[str, float] | np.void,
    new: npt.NDArray[np.float64],
    peer_median: float,
    limit: int = MAX_REASONS,
) -> list[str]:
    """Up to ``limit`` (at most :data:`MAX_REASONS`) reasons, those that explain the change first,
    largest first, then the context (may be empty when no single change stands out); ``baseline``
    is the item's record (a STATE_DTYPE row, or its fields by name)."""
    explaining, context = reasons_and_context(features, baseline, new, peer_median, limit=limit)
    return (explaining + context)[: min(limit, MAX_REASONS)]


def reasons_and_context(
    features: npt.NDArray[np.float64],
    baseline: Mapping[str, float] | np.void,
    new: npt.NDArray[np.float64],
    peer_median: float,
    limit: int = MAX_REASONS,
) -> tuple[list[str], list[str]]:
    """Up to ``limit`` reasons that explain the change, largest first, and the context-only ones
    (the update gap). Only the reasons returned are worded."""
    return reasons_of_row(features.tolist(), baseline, new.tolist(), peer_median, limit)


def reasons_of_row(
    f: Sequence[float],
    baseline: Mapping[str, float] | np.void,
    new: Sequence[float],
    peer_median: float,
    limit: int = MAX_REASONS,
) -> tuple[list[str], list[str]]:
    """:func:`reasons_and_context` of one row given as Python floats (``features`` and ``new``
    converted once per batch by the caller)."""
    s1, m1, hi1, p1 = new
    s0, p0 = float(baseline["stock"]), float(baseline["price"])
    hi0, m0 = float(baseline["max"]), float(baseline["min"])
    ranked: list[tuple[float, Callable[[], str]]] = []
    if f[0] >= _STOCK_VS_MAX:

        def stock_level() -> str:
            usual = float(baseline["usual_level"])
            known = f" (usually ~{_n(usual)})" if _n(usual) != _n(s1) else ""  # no history yet: says nothing
            return f"stock {_n(s1)} is {_x(s1 / max(hi0, m0, 1.0))} this item's max level {_n(hi0)}{known}"

        ranked.append((f[0] / _STOCK_VS_MAX, stock_level))
    if f[2] >= _DROP:

        def drop() -> str:
            usual = float(baseline["usual_drop"])
            return f"stock fell from {_n(s0)} to {_n(s1)} ({_n(s1 - s0)}), {_x((s0 - s1) / max(usual, 0.5))} this item's usual decrease of ~{_n(usual)}"  # fmt: skip

        ranked.append((f[2] / _DROP, drop))
    if f[3] >= _RISE:

        def rise() -> str:
            usual = float(baseline["usual_rise"])
            return f"stock rose from {_n(s0)} to {_n(s1)} (+{_n(s1 - s0)}), {_x((s1 - s0) / max(usual, 0.5))} this item's usual increase of ~{_n(usual)}"  # fmt: skip

        ranked.append((f[3] / _RISE, rise))
    if abs(f[4]) >= _PRICE_STEP or abs(f[6]) >= _PRICE_VS_PEERS:

        def price() -> str:
            peers = f"; group median {_money(math.exp(peer_median))}" if not math.isnan(peer_median) else ""
            ratio = p1 / p0 if p0 > 0 else math.inf
            if abs(f[4]) >= _PRICE_STEP or not peers:
                return f"price {_money(p1)} is {_x(ratio)} the previous {_money(p0)} (regular ~{_money(float(baseline['ref_price']))}{peers})"  # fmt: skip
            median = math.exp(
                peer_median
            )  # an unmoved price (or an item with no history yet) far from its peers'
            return f"price {_money(p1)} is {_share(p1 / median)} its group's median {_money(median)}"

        ranked.append((max(abs(f[4]) / _PRICE_STEP, abs(f[6]) / _PRICE_VS_PEERS), price))
    for j, name, old, value in ((7, "min level", m0, m1), (8, "max level", hi0, hi1)):
        if abs(f[j]) >= _LEVEL_STEP:
            ranked.append((abs(f[j]) / _LEVEL_STEP, partial(_level, name, old, value)))
    ranked.sort(key=lambda r: -r[0])
    explaining = [say() for _, say in ranked[: min(limit, MAX_REASONS)]]
    context = []  # a long pause is no error (the gap has no hull penalty): it never explains an alert
    if f[10] >= _GAP and len(explaining) < limit:
        usual = float(baseline["usual_gap"])
        context.append(f"first update in {_dur(usual * math.exp(f[10]))}, usually every ~{_dur(usual)}")
    return explaining, context


def _level(name: str, old: float, value: float) -> str:
    return f"{name} {_n(value)} was {_n(old)} ({_x(value / max(old, 1.0))})"


def _n(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 10 or x == int(x) else f"{x:,.2f}"


def _money(x: float) -> str:
    return f"{x:,.2f}"


def _x(k: float) -> str:
    if not math.isfinite(k):
        return "infinitely many times"
    return f"{k:,.0f}x" if abs(k) >= 10 else f"{k:.1f}x"


def _share(k: float) -> str:
    return f"1/{1 / k:,.0f} of" if 0 < k < 0.1 else _x(k)


def _dur(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
