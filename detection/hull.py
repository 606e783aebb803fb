"""How far a change lies beyond everything normal motion produced: the forest's blind spot.

An isolation forest scores a point outside its training data like the most extreme training point
in that direction (every split threshold lies inside the data), so a tenfold jump and a barely
unusual one would score alike. The hull penalty restores magnitude: per feature, the distance
beyond the 0.1-99.9 % range of normal motion in units of that range, times a weight, summed::

    penalty = sum_j weight_j * max(0, x_j - high_j, low_j - x_j) / max(high_j - low_j, MIN_WIDTH)

The range is that of the feature's normal *moves* (its non-zero values, widened to include 0):
most features are 0 on most updates (a price or level moves on a few in a hundred), and quantiles
over all rows would put a routine re-plan of the levels outside. Where the normal range is known
better than the training motion shows it (a re-plan may halve or double the levels), ``fit``
widens the range to it (``at_least``) without moving the other features' ranges.

Inside the hull the penalty is 0 and the change ranks after every change beyond it
(:func:`detection.detector.gate`); at the default alert budget none of them alerts: a combination
of changes each within normal motion is not worth an alert. Beyond it, the forest's score decides
how far beyond is far enough (a tie-breaker among the outliers). A budget larger than the share
of normal motion beyond the hull lets the rarest changes inside it alert too, by forest score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["HULL_QUANTILES", "MIN_WIDTH", "Hull"]

FloatArray = npt.NDArray[np.float64]
HULL_QUANTILES: Final = (0.001, 0.999)
MIN_WIDTH: Final = 0.1
MOVE_EPS: Final = 1e-6  # below this a feature did not move (float32 state rounding stays below)
MIN_MOVES: Final = 50  # fewer non-zero values than this: the range of all values


class Hull:
    """Per-feature normal range and weights (plain lists in the model metadata)."""

    __slots__ = ("_high", "_low", "_weight", "_width")

    def __init__(self, low: Sequence[float], high: Sequence[float], weight: Sequence[float]) -> None:
        self._low, self._high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        self._weight = np.asarray(weight, dtype=np.float64)
        if not (self._low.shape == self._high.shape == self._weight.shape):
            raise ValueError("hull low, high and weight differ in length")
        self._width = np.maximum(self._high - self._low, MIN_WIDTH)

    @classmethod
    def fit(
        cls,
        x: FloatArray,
        weight: Sequence[float],
        *,
        at_least: Mapping[int, tuple[float, float]] | None = None,
    ) -> Hull:
        """The 0.1-99.9 % range of each feature's non-zero values (0 included), widened to
        ``at_least[j]`` for the features whose normal range is known (the level re-plans)."""
        low, high = [], []
        for j in range(x.shape[1]):
            col = x[:, j]
            moves = col[np.abs(col) > MOVE_EPS]
            q = np.quantile(moves if moves.size >= MIN_MOVES else col, HULL_QUANTILES)
            lo_at, hi_at = (at_least or {}).get(j, (0.0, 0.0))
            low.append(min(float(q[0]), 0.0, lo_at))
            high.append(max(float(q[1]), 0.0, hi_at))
        return cls(low, high, weight)

    def penalty(self, x: FloatArray) -> FloatArray:
        beyond = np.maximum(np.maximum(x - self._high, self._low - x), 0.0) / self._width
        result: FloatArray = beyond @ self._weight
        return result

    def arrays(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """(low, high, width, weight) for the compiled kernel."""
        return self._low, self._high, self._width, self._weight

    @property
    def low(self) -> list[float]:
        return [float(v) for v in self._low]

    @property
    def high(self) -> list[float]:
        return [float(v) for v in self._high]

    @property
    def weight(self) -> list[float]:
        return [float(v) for v in self._weight]
