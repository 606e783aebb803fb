"""The seven features of the original design, vectorised over a batch.

Order and formulas are the seed's (``ml-anomaly-detection-guide.md``, "Feature Engineering")::

    stock_quantity        stock
    stock_ratio           stock / max(min, 1)
    stock_range_position  (stock - min) / max(max - min, 1)
    value_at_risk         stock * price
    price                 price
    min_stock_level       min
    max_stock_level       max

The guide's worked example prints 331.0 for item 4's range position; its own formula gives
(50000 - 50) / 150 = 333.0, and the formula is what is implemented. The ``max(.., 1)`` guards
keep every feature finite for any validated item (see :data:`detection.items.MAX_MAGNITUDE`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from detection.items import StockItem

__all__ = ["FEATURE_NAMES", "N_FEATURES", "feature_matrix", "features_from_columns"]

FEATURE_NAMES: Final[tuple[str, ...]] = (
    "stock_quantity",
    "stock_ratio",
    "stock_range_position",
    "value_at_risk",
    "price",
    "min_stock_level",
    "max_stock_level",
)
N_FEATURES: Final = len(FEATURE_NAMES)

FloatArray = npt.NDArray[np.float64]


def features_from_columns(
    stock: npt.ArrayLike, min_: npt.ArrayLike, max_: npt.ArrayLike, price: npt.ArrayLike
) -> FloatArray:
    """The (n, 7) float64 feature matrix from four equally long 1-d columns."""
    s = np.asarray(stock, dtype=np.float64).reshape(-1)
    lo = np.asarray(min_, dtype=np.float64).reshape(-1)
    hi = np.asarray(max_, dtype=np.float64).reshape(-1)
    p = np.asarray(price, dtype=np.float64).reshape(-1)
    if not (s.shape == lo.shape == hi.shape == p.shape):
        raise ValueError(
            f"columns differ in length: {s.shape[0]}, {lo.shape[0]}, {hi.shape[0]}, {p.shape[0]}"
        )
    out = np.empty((s.shape[0], N_FEATURES), dtype=np.float64)
    out[:, 0] = s
    np.divide(s, np.maximum(lo, 1.0), out=out[:, 1])
    np.divide(s - lo, np.maximum(hi - lo, 1.0), out=out[:, 2])
    np.multiply(s, p, out=out[:, 3])
    out[:, 4] = p
    out[:, 5] = lo
    out[:, 6] = hi
    return out


def feature_matrix(items: Sequence[StockItem]) -> FloatArray:
    """The (n, 7) float64 feature matrix of ``items``, rows in input order."""
    n = len(items)
    cols = np.empty((4, n), dtype=np.float64)
    cols[0] = [it.stock_quantity for it in items]
    cols[1] = [it.min_stock_level for it in items]
    cols[2] = [it.max_stock_level for it in items]
    cols[3] = [it.price for it in items]
    return features_from_columns(cols[0], cols[1], cols[2], cols[3])
