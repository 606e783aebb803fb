"""Column-wise item validation for the hot path: no pydantic object per message.

:class:`ItemColumns` collects the four numbers and the ids of a batch's valid items straight
into lists, for ``detection.features_from_columns`` + ``AnomalyModel.decide_features``. The
fast path takes only the plain, unambiguous case — canonical keys, a ``str`` id without
surrounding whitespace, ``int``/``float`` numbers inside ``detection.items.MAX_MAGNITUDE`` — and
hands everything else (aliases, numeric strings, bools, nulls, NaN, ...) to
``detection.parse_item``, which stays the single definition of validity. A property test
(tests/unit/test_columns.py) checks the fast path never accepts what parse_item rejects and
yields exactly parse_item's values when it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from detection import StockItem, parse_item
from detection.features import features_from_columns
from detection.items import MAX_ID_LENGTH, MAX_MAGNITUDE

__all__ = ["ITEM_FIELDS", "ItemColumns"]

_DEFAULTS: Final = {name: StockItem.model_fields[name].default for name in StockItem.model_fields}
_STOCK: Final[float] = _DEFAULTS["stock_quantity"]
_MIN: Final[float] = _DEFAULTS["min_stock_level"]
_MAX: Final[float] = _DEFAULTS["max_stock_level"]
_PRICE: Final[float] = _DEFAULTS["price"]
_ALIASES: Final = ("sku", "_id", "min_stock", "max_stock")  # alias resolution is parse_item's job
_MAG: Final = MAX_MAGNITUDE
_ID_MAX: Final = MAX_ID_LENGTH
ITEM_FIELDS: Final = ("item_id", "event_id", "stock_quantity", "min_stock_level", "max_stock_level", "price")


def _plain_id(v: Any) -> bool:
    return type(v) is str and 0 < len(v) <= MAX_ID_LENGTH and not v[0].isspace() and not v[-1].isspace()


@dataclass(slots=True)
class ItemColumns:
    """The valid items of a batch, column by column, in arrival order."""

    item_ids: list[str] = field(default_factory=list)
    event_ids: list[str | None] = field(default_factory=list)
    stock: list[float] = field(default_factory=list)
    min_level: list[float] = field(default_factory=list)
    max_level: list[float] = field(default_factory=list)
    price: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.item_ids)

    def append_fast(self, obj: dict[str, Any]) -> bool:
        """Append ``obj`` if it is plainly valid; False means "ask parse_item" (nothing appended)."""
        get = obj.get
        item_id: Any = get("item_id")
        event_id = get("event_id")
        s = get("stock_quantity", _STOCK)
        lo = get("min_stock_level", _MIN)
        hi = get("max_stock_level", _MAX)
        p = get("price", _PRICE)
        # Inlined checks (this runs once per message): a str id without surrounding whitespace,
        # int/float numbers within +/-MAX_MAGNITUDE (the chained comparison also rejects NaN).
        if type(item_id) is not str or not 0 < len(item_id) <= _ID_MAX:
            return False
        if item_id[0].isspace() or item_id[-1].isspace():
            return False
        if event_id is not None and not _plain_id(event_id):
            return False
        ts, tlo, thi, tp = type(s), type(lo), type(hi), type(p)
        if not (
            (ts is float or ts is int)
            and (tlo is float or tlo is int)
            and (thi is float or thi is int)
            and (tp is float or tp is int)
            and -_MAG <= s <= _MAG
            and -_MAG <= lo <= _MAG
            and -_MAG <= hi <= _MAG
            and -_MAG <= p <= _MAG
        ):
            return False
        for alias in _ALIASES:
            if alias in obj:
                return False
        self.item_ids.append(item_id)
        self.event_ids.append(event_id)
        self.stock.append(s)
        self.min_level.append(lo)
        self.max_level.append(hi)
        self.price.append(p)
        return True

    def append_parsed(self, obj: Any) -> None:
        """Validate with ``parse_item`` (raises ItemValidationError) and append the item."""
        item = parse_item(obj)
        self.item_ids.append(str(item.item_id))
        self.event_ids.append(item.event_id)
        self.stock.append(item.stock_quantity)
        self.min_level.append(item.min_stock_level)
        self.max_level.append(item.max_stock_level)
        self.price.append(item.price)

    def features(self) -> npt.NDArray[np.float64]:
        """The (n, 7) feature matrix, exactly as ``detection.feature_matrix`` builds it."""
        return features_from_columns(
            np.asarray(self.stock, dtype=np.float64),
            np.asarray(self.min_level, dtype=np.float64),
            np.asarray(self.max_level, dtype=np.float64),
            np.asarray(self.price, dtype=np.float64),
        )

    def item(self, i: int) -> dict[str, Any]:
        """Row ``i`` as the JSON of its StockItem (``StockItem.model_dump(mode="json")``)."""
        return {
            "item_id": self.item_ids[i],
            "event_id": self.event_ids[i],
            "stock_quantity": float(self.stock[i]),
            "min_stock_level": float(self.min_level[i]),
            "max_stock_level": float(self.max_level[i]),
            "price": float(self.price[i]),
        }
