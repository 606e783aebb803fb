"""Peer statistics: where an item's price sits among the items of its group (category, ...).

Computed at training time from the snapshot and stored in the model as plain JSON
(``{group: [median log price, spread, count]}``); looked up for a batch with one
``searchsorted`` on the groups' crc32 codes (:func:`detection.item_state.group_code`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from detection.item_state import group_code

__all__ = ["MIN_GROUP_SIZE", "PeerStats"]

FloatArray = npt.NDArray[np.float64]

MIN_GROUP_SIZE: Final = 5  # fewer priced items than this and a group has no statistics
MIN_SPREAD: Final = 0.1  # log units: a group of near-identical prices must not make every change huge


class PeerStats:
    """Median and robust spread (IQR / 1.349) of log price per group; immutable."""

    __slots__ = ("_codes", "_median", "_spread", "groups")

    def __init__(self, groups: Mapping[str, Sequence[float]]) -> None:
        self.groups = {str(k): (float(v[0]), float(v[1]), int(v[2])) for k, v in groups.items()}
        codes = np.array([group_code(k) for k in self.groups], dtype=np.uint32)
        order = np.argsort(codes, kind="stable")
        self._codes = codes[order]
        values = np.array(list(self.groups.values()), dtype=np.float64).reshape(-1, 3)[order]
        self._median, self._spread = values[:, 0], values[:, 1]

    @classmethod
    def fit(cls, groups: Sequence[str | None], prices: npt.ArrayLike) -> PeerStats:
        """Statistics of every group with at least :data:`MIN_GROUP_SIZE` positive prices."""
        p = np.asarray(prices, dtype=np.float64)
        by_group: dict[str, list[float]] = {}
        for g, price in zip(groups, p.tolist(), strict=True):
            if g is not None and price > 0:
                by_group.setdefault(g, []).append(price)
        out: dict[str, tuple[float, float, int]] = {}
        for g, values in by_group.items():
            if len(values) >= MIN_GROUP_SIZE:
                logs = np.log(values)
                q25, q50, q75 = np.percentile(logs, (25, 50, 75))
                out[g] = (float(q50), max(float(q75 - q25) / 1.349, MIN_SPREAD), len(values))
        return cls(out)

    def lookup(self, codes: npt.NDArray[np.uint32]) -> tuple[FloatArray, FloatArray]:
        """(median, spread) per row; NaN median where the group is unknown or has no statistics."""
        n = codes.shape[0]
        if self._codes.size == 0:
            return np.full(n, np.nan), np.ones(n)
        at = np.minimum(np.searchsorted(self._codes, codes), self._codes.size - 1)
        hit = (self._codes[at] == codes) & (codes != 0)
        return np.where(hit, self._median[at], np.nan), np.where(hit, self._spread[at], 1.0)

    def arrays(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(sorted codes as float64, median, spread) for the compiled kernel."""
        return self._codes.astype(np.float64), self._median, self._spread

    def to_json(self) -> dict[str, list[float]]:
        return {k: [m, s, float(c)] for k, (m, s, c) in self.groups.items()}
