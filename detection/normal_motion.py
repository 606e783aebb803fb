"""Synthetic normal motion of the snapshot's items: the training set of the change model.

A snapshot holds one state per item and no movement, yet the forest must learn what normal
*changes* look like. So each snapshot item is moved through ``steps`` plausible updates drawn
from wide, generic priors (:data:`PRIORS`), and every update goes through the very code that
serves (:func:`detection.change_features.merge`, ``change_features``, ``advance``): training and
serving features cannot drift apart. The priors describe retail motion in general, relative to
each item's own levels, never absolute units:

* most updates are sales: 1 + Poisson units, the item's sale size drawn once per item between
  0.5 % and 10 % of its max level, spikes (promotions, weekends) up to ~4x;
* at or below ~1.3x its min level an item is restocked (half the time: lead time), up to its max
  level or by its min-max range, +/- 10 %;
* a few price moves: repricing (about +/-10 %), promotions (5-50 % off), promotion ends;
* rarely the levels are re-planned (x0.8-1.3); gaps between updates ~ exponential, the mean
  drawn per item between 10 minutes and 2 days.

With real history available (a later retrain), observed transitions can be appended instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from detection.change_features import Merged, advance, change_features
from detection.item_state import StateRows
from detection.peers import PeerStats

__all__ = ["PRIORS", "Priors", "normal_transitions"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Priors:
    """Generic retail motion, relative to each item's own levels (see the module docstring)."""

    sale_size_share: tuple[float, float] = (0.005, 0.1)  # log-uniform, of the max level
    sale_spike_sigma: float = 0.6  # lognormal spread of a sale around the item's size
    restock_below_min: float = 1.3
    restock_wait: float = 0.7  # chance that a due restock waits (lead time: stock may reach 0)
    restock_accuracy: tuple[float, float] = (0.9, 1.1)
    price_event: float = 0.06  # chance an update moves the price
    reprice_sigma: float = 0.1
    promo_cut: tuple[float, float] = (0.05, 0.5)
    level_event: float = 0.005
    level_factor: tuple[float, float] = (0.8, 1.3)
    gap_mean_s: tuple[float, float] = (600.0, 172_800.0)  # log-uniform


PRIORS: Final = Priors()


def normal_transitions(
    states: StateRows, peers: PeerStats, rng: np.random.Generator, steps: int
) -> tuple[FloatArray, StateRows]:
    """Features of ``steps`` normal updates of every item (``steps * n`` rows) and the end states."""
    n = states.shape[0]
    scale = np.maximum(np.maximum(states["max"], states["min"]), 1.0)
    lo, hi = np.log(PRIORS.sale_size_share)
    size = np.maximum(scale * np.exp(rng.uniform(lo, hi, n)), 1.0)
    glo, ghi = np.log(PRIORS.gap_mean_s)
    gap_mean = np.exp(rng.uniform(glo, ghi, n))
    regular = states["price"].astype(np.float64).copy()
    time = np.zeros(n)
    median, spread = peers.lookup(states["group"])
    out: list[FloatArray] = []
    for _ in range(steps):
        time = time + rng.exponential(gap_mean)
        merged = _step(states, rng, size, regular, time)
        out.append(change_features(states, merged, median, spread))
        states = advance(states, merged, np.ones(n, dtype=bool))
    return np.concatenate(out), states


def _step(states: StateRows, rng: np.random.Generator, size: FloatArray, regular: FloatArray,
          time: FloatArray) -> Merged:  # fmt: skip
    n = states.shape[0]
    s, lo, hi = (
        states["stock"].astype(np.float64),
        states["min"].astype(np.float64),
        states["max"].astype(np.float64),
    )
    price = states["price"].astype(np.float64)
    spike = rng.lognormal(0.0, PRIORS.sale_spike_sigma, n)
    sale = np.minimum(1.0 + rng.poisson(np.maximum(size * spike - 1.0, 0.0)), np.maximum(s, 0.0))
    due = (s <= PRIORS.restock_below_min * lo) & (rng.random(n) > PRIORS.restock_wait)
    a, b = PRIORS.restock_accuracy
    up_to_max = np.maximum(hi - s, 0.0) * rng.uniform(a, b, n)
    by_range = np.maximum(hi - lo, 1.0) * rng.uniform(a, b, n)
    qty = np.round(np.where(rng.random(n) < 0.5, up_to_max, by_range))
    new_s = np.where(due, s + qty, s - sale)
    # prices: repricing, a promotion, or the end of one
    u = rng.random(n)
    moves = u < PRIORS.price_event
    kind = rng.integers(0, 3, n)
    cut_lo, cut_hi = PRIORS.promo_cut
    repriced = regular * np.exp(rng.normal(0.0, PRIORS.reprice_sigma, n))
    promo = regular * (1.0 - rng.uniform(cut_lo, cut_hi, n))
    target = np.select([kind == 0, kind == 1], [repriced, promo], regular)
    regular[moves & (kind == 0)] = repriced[moves & (kind == 0)]
    new_price = np.where(moves, np.maximum(np.round(target, 2), 0.01), price)
    levels = rng.random(n) < PRIORS.level_event
    f = np.where(levels, rng.uniform(*PRIORS.level_factor, n), 1.0)
    new_lo = np.where(levels, np.maximum(np.round(lo * f), 1.0), lo)
    new_hi = np.where(levels, np.maximum(np.round(hi * f), new_lo + 2.0), hi)
    return Merged(new_s, new_lo, new_hi, new_price, time, states["group"].copy())
