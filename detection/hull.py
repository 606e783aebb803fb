"""How far a change lies beyond everything normal motion produced: the forest's blind spot.

An isolation forest scores a point outside its training data like the most extreme training point
in that direction (every split threshold lies inside the data), so a tenfold jump and a barely
unusual one would score alike. The hull penalty restores magnitude: per feature, the distance
beyond the 0.1-99.9 % range of normal motion in units of that range, times a weight, summed::

    penalty = sum_j weight_j * max(0, x_j - high_j, low_j - x_j) / max(high_j - low_j, MIN_WIDTH)

Inside the hull it is 0 and the forest alone decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["HULL_QUANTILES", "MIN_WIDTH", "Hull"]

FloatArray = npt.NDArray[np.float64]
HULL_QUANTILES: Final = (0.001, 0.999)
MIN_WIDTH: Final = 0.1


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
    def fit(cls, x: FloatArray, weight: Sequence[float]) -> Hull:
        low, high = np.quantile(x, HULL_QUANTILES, axis=0)
        return cls(low.tolist(), high.tolist(), weight)

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
