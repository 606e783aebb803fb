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

from detection.item_state import STATE_DTYPE

__all__ = ["FAR", "MAX_REASONS", "change_reasons", "reasons_and_context", "reasons_of_row", "reasons_of_rows"]

FAR: Final = {"stock_vs_max": math.log1p(1.5), "drop_vs_usual": math.log1p(6.0),
              "rise_vs_usual": math.log1p(2.5), "price_step": math.log(1.5),
              "price_vs_peers": 3.0, "level_step": math.log(1.5), "gap_vs_usual": math.log(20.0)}  # fmt: skip
MAX_REASONS: Final = 3
_STOCK_VS_MAX, _DROP, _RISE = FAR["stock_vs_max"], FAR["drop_vs_usual"], FAR["rise_vs_usual"]
_PRICE_STEP, _PRICE_VS_PEERS, _LEVEL_STEP, _GAP = (FAR["price_step"], FAR["price_vs_peers"], FAR["level_step"],
                                                   FAR["gap_vs_usual"])  # fmt: skip
_FIELDS: Final = tuple(STATE_DTYPE.names or ())
_STOCK, _MIN, _MAX, _PRICE, _REF, _U_DROP, _U_RISE, _U_LEVEL, _U_GAP = map(_FIELDS.index, (
    "stock", "min", "max", "price", "ref_price", "usual_drop", "usual_rise", "usual_level", "usual_gap"))  # fmt: skip
_READ: Final = [0, 2, 3, 4, 6, 7, 8, 10]  # the features that choose the reasons


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
        ranked.append(
            (f[0] / _STOCK_VS_MAX, partial(_stock_level, s1, hi0, m0, float(baseline["usual_level"])))
        )
    if f[2] >= _DROP:
        ranked.append((f[2] / _DROP, partial(_drop, s0, s1, float(baseline["usual_drop"]))))
    if f[3] >= _RISE:
        ranked.append((f[3] / _RISE, partial(_rise, s0, s1, float(baseline["usual_rise"]))))
    if abs(f[4]) >= _PRICE_STEP or abs(f[6]) >= _PRICE_VS_PEERS:
        step = abs(f[4]) >= _PRICE_STEP
        said = partial(_price, p1, p0, float(baseline["ref_price"]), peer_median, step)
        ranked.append((max(abs(f[4]) / _PRICE_STEP, abs(f[6]) / _PRICE_VS_PEERS), said))
    for j, name, old, value in ((7, "min level", m0, m1), (8, "max level", hi0, hi1)):
        if abs(f[j]) >= _LEVEL_STEP:
            ranked.append((abs(f[j]) / _LEVEL_STEP, partial(_level, name, old, value)))
    ranked.sort(key=lambda r: -r[0])
    explaining = [say() for _, say in ranked[: min(limit, MAX_REASONS)]]
    context = []  # a long pause is no error (the gap has no hull penalty): it never explains an alert
    if f[10] >= _GAP and len(explaining) < limit:
        context.append(_gap(float(baseline["usual_gap"]), f[10]))
    return explaining, context


def reasons_of_rows(
    features: npt.NDArray[np.float64],
    baseline: npt.NDArray[np.float64],
    new: npt.NDArray[np.float64],
    peer_median: npt.NDArray[np.float64],
    limits: Sequence[int],
) -> list[tuple[list[str], list[str]]]:
    """:func:`reasons_of_row` of each row (``baseline``: the STATE_DTYPE fields in order, one row
    each) with its limit: which concerns are far, and their ranking, found for all rows at once;
    a row with a non-finite feature among those read goes through :func:`reasons_of_row`."""
    f = features
    a4, a6, a7, a8 = (np.abs(f[:, k]) for k in (4, 6, 7, 8))
    step = a4 >= _PRICE_STEP
    far = np.stack([f[:, 0] >= _STOCK_VS_MAX, f[:, 2] >= _DROP, f[:, 3] >= _RISE, step | (a6 >= _PRICE_VS_PEERS),
                    a7 >= _LEVEL_STEP, a8 >= _LEVEL_STEP], axis=1)  # fmt: skip
    size = np.stack([f[:, 0] / _STOCK_VS_MAX, f[:, 2] / _DROP, f[:, 3] / _RISE,
                     np.maximum(a4 / _PRICE_STEP, a6 / _PRICE_VS_PEERS), a7 / _LEVEL_STEP, a8 / _LEVEL_STEP], axis=1)  # fmt: skip
    # largest first, ties in concern order (as reasons_of_row's stable sort); the near ones last
    order: list[list[int]] = np.argsort(np.where(far, -size, np.inf), axis=1, kind="stable").tolist()
    counts: list[int] = far.sum(axis=1).tolist()
    steps: list[bool] = step.tolist()
    gaps: list[bool] = (f[:, 10] >= _GAP).tolist()
    finite: list[bool] = np.logical_and.reduce(np.isfinite(f[:, _READ]), axis=1).tolist()
    rows, base, news, peers = f.tolist(), baseline.tolist(), new.tolist(), peer_median.tolist()
    out: list[tuple[list[str], list[str]]] = []
    for r, limit in enumerate(limits):
        b, peer = base[r], peers[r]
        if not finite[r]:
            out.append(reasons_of_row(rows[r], dict(zip(_FIELDS, b, strict=True)), news[r], peer, limit))
            continue
        s1, m1, hi1, p1 = news[r]
        explaining = []
        for k in order[r][: counts[r]][: min(limit, MAX_REASONS)]:
            if k == 0:
                explaining.append(_stock_level(s1, b[_MAX], b[_MIN], b[_U_LEVEL]))
            elif k == 1:
                explaining.append(_drop(b[_STOCK], s1, b[_U_DROP]))
            elif k == 2:
                explaining.append(_rise(b[_STOCK], s1, b[_U_RISE]))
            elif k == 3:
                explaining.append(_price(p1, b[_PRICE], b[_REF], peer, steps[r]))
            else:
                explaining.append(
                    _level(*(("min level", b[_MIN], m1) if k == 4 else ("max level", b[_MAX], hi1)))
                )
        context = [_gap(b[_U_GAP], rows[r][10])] if gaps[r] and len(explaining) < limit else []
        out.append((explaining, context))
    return out


def _stock_level(s1: float, hi0: float, m0: float, usual: float) -> str:
    stock, said = _n(s1), _n(usual)
    known = f" (usually ~{said})" if said != stock else ""  # no history yet: says nothing
    return f"stock {stock} is {_x(s1 / max(hi0, m0, 1.0))} this item's max level {_n(hi0)}{known}"


def _drop(s0: float, s1: float, usual: float) -> str:
    return f"stock fell from {_n(s0)} to {_n(s1)} ({_n(s1 - s0)}), {_x((s0 - s1) / max(usual, 0.5))} this item's usual decrease of ~{_n(usual)}"  # fmt: skip


def _rise(s0: float, s1: float, usual: float) -> str:
    return f"stock rose from {_n(s0)} to {_n(s1)} (+{_n(s1 - s0)}), {_x((s1 - s0) / max(usual, 0.5))} this item's usual increase of ~{_n(usual)}"  # fmt: skip


def _price(p1: float, p0: float, ref: float, peer_median: float, step: bool) -> str:
    # amounts as money (``:,.2f``) in place: up to four a reason, no call each
    median = math.nan if math.isnan(peer_median) else math.exp(peer_median)
    peers = f"; group median {median:,.2f}" if not math.isnan(peer_median) else ""
    if step or not peers:
        ratio = p1 / p0 if p0 > 0 else math.inf
        return f"price {p1:,.2f} is {_x(ratio)} the previous {p0:,.2f} (regular ~{ref:,.2f}{peers})"
    # an unmoved price (or an item with no history yet) far from its peers'
    return f"price {p1:,.2f} is {_share(p1 / median)} its group's median {median:,.2f}"


def _gap(usual: float, excess: float) -> str:
    return f"first update in {_dur(usual * math.exp(excess))}, usually every ~{_dur(usual)}"


def _level(name: str, old: float, value: float) -> str:
    return f"{name} {_n(value)} was {_n(old)} ({_x(value / max(old, 1.0))})"


def _n(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 10 or x == int(x) else f"{x:,.2f}"


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
