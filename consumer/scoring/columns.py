"""Column-wise item validation for the hot path: no pydantic object per message.

:class:`ItemColumns` holds the four numbers and the ids of a batch's valid items, column by
column, for ``detection.features_from_columns`` + ``AnomalyModel.decide_features``. The fast
paths take only the plain, unambiguous case — canonical keys, a ``str`` id without surrounding
whitespace, ``int``/``float`` numbers inside ``detection.items.MAX_MAGNITUDE`` — and hand
everything else (aliases, numeric strings, bools, nulls, NaN, ...) to ``detection.parse_item``,
which stays the single definition of validity.

Two fast paths with the same contract:

* :meth:`ItemColumns.from_objects` (the consumer's): a whole batch at once. The six fields are
  pulled out of every object with one C-level ``itemgetter`` map, then checked column by column
  with C-level ``map``/``set`` (types, id lengths, surrounding whitespace) and numpy (finiteness
  and magnitude). Only the rows that fail a check go through ``parse_item``, so a batch of plain
  messages costs no Python bytecode per message.
* :meth:`ItemColumns.append_fast`: one object (tests, callers without a batch).

Property tests (tests/unit/test_columns.py) check that neither fast path accepts what parse_item
rejects, that accepted rows carry exactly parse_item's values, and that ``from_objects`` agrees
with ``parse_item`` row by row, order included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from detection import ItemValidationError, StockItem, parse_item
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
_ALIAS_SET: Final = frozenset(_ALIASES)
_NUMBER_TYPES: Final = frozenset((int, float))
_STR_TYPE: Final = frozenset((str,))
_ALL_FIELDS: Final = itemgetter(*ITEM_FIELDS)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def _plain_id(v: Any) -> bool:
    return type(v) is str and 0 < len(v) <= MAX_ID_LENGTH and not v[0].isspace() and not v[-1].isspace()


def _plain_ids(ids: list[Any]) -> bool:
    """``_plain_id`` for every element, without a Python-level loop (``strip`` = the isspace rule)."""
    return not ids or (
        set(map(type, ids)) == _STR_TYPE
        and max(map(len, ids)) <= _ID_MAX
        and "" not in ids
        and list(map(str.strip, ids)) == ids
    )


def _bad_ids(ids: list[Any], *, optional: bool) -> BoolArray | None:
    """Rows whose id is not plain (``None`` allowed when ``optional``); ``None`` when all are fine."""
    if _plain_ids(ids):
        return None
    if optional and _plain_ids([v for v in ids if v is not None]):
        return None
    return np.array([not (_plain_id(v) or (optional and v is None)) for v in ids], dtype=np.bool_)


def _column(objs: Sequence[dict[str, Any]], name: str, missing: list[str]) -> list[Any]:
    """``[o.get(name, default) for o in objs]``, with one C-level map when every object has it.

    Appends ``name`` to ``missing`` when some object lacks it.
    """
    try:
        return list(map(itemgetter(name), objs))
    except KeyError:
        missing.append(name)
        default = _DEFAULTS[name]
        return [o.get(name, default) for o in objs]


def _number_column(values: list[Any]) -> tuple[FloatArray, BoolArray]:
    """float64 column and its "not plain" mask: non-int/float types, NaN, inf, beyond MAX_MAGNITUDE."""
    if set(map(type, values)) <= _NUMBER_TYPES:
        try:
            column = np.array(values, dtype=np.float64)
        except OverflowError:  # an int beyond float range: the row-wise path below finds it
            pass
        else:
            return column, ~(np.abs(column) <= _MAG)  # NaN compares False: not plain
    ok = [(type(v) is int or type(v) is float) and -_MAG <= v <= _MAG for v in values]
    column = np.array([v if k else 0.0 for v, k in zip(values, ok, strict=True)], dtype=np.float64)
    return column, ~np.array(ok, dtype=np.bool_)


@dataclass(slots=True)
class ItemColumns:
    """The valid items of a batch, column by column, in arrival order."""

    item_ids: list[str] = field(default_factory=list)
    event_ids: list[str | None] = field(default_factory=list)
    stock: list[float] = field(default_factory=list)
    min_level: list[float] = field(default_factory=list)
    max_level: list[float] = field(default_factory=list)
    price: list[float] = field(default_factory=list)
    _arrays: tuple[FloatArray, FloatArray, FloatArray, FloatArray] | None = field(
        default=None, repr=False, compare=False
    )  # the numeric columns as float64 arrays, when from_objects built them

    def __len__(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_objects(
        cls, objs: Sequence[dict[str, Any]]
    ) -> tuple[ItemColumns, list[int], list[tuple[int, str]]]:
        """Validate a batch of decoded JSON objects at once.

        Returns the columns of the valid items (in input order), the index in ``objs`` of each
        of them, and ``(index, reason)`` for each rejected object (reasons are parse_item's).
        """
        n = len(objs)
        if not n:
            return cls(), [], []
        missing: list[str] = []
        ids, event_ids, *numbers = (_column(objs, name, missing) for name in ITEM_FIELDS)
        bad = np.zeros(n, dtype=np.bool_)
        for mask in (_bad_ids(ids, optional=False), _bad_ids(event_ids, optional=True)):
            if mask is not None:
                bad |= mask
        arrays = []
        for values in numbers:
            column, mask = _number_column(values)
            bad |= mask
            arrays.append(column)
        # Alias resolution is parse_item's job. Objects that all hold exactly the six fields have
        # no alias (the usual batch: one C-level sum); otherwise look at every key once.
        exact = not missing and sum(map(len, objs)) == len(ITEM_FIELDS) * n
        if not exact and not _ALIAS_SET.isdisjoint(set().union(*objs)):
            bad |= np.array([not _ALIAS_SET.isdisjoint(o) for o in objs], dtype=np.bool_)
        if not bad.any():  # the usual batch: the extracted lists are the columns (int or float)
            s, lo, hi, p = numbers
            columns = cls(ids, event_ids, s, lo, hi, p, (arrays[0], arrays[1], arrays[2], arrays[3]))
            return columns, list(range(n)), []
        rejects: list[tuple[int, str]] = []
        keep = ~bad
        for i in np.flatnonzero(bad).tolist():
            try:
                item = parse_item(objs[i])
            except ItemValidationError as exc:
                rejects.append((i, exc.reason))
                continue
            keep[i] = True
            ids[i], event_ids[i] = str(item.item_id), item.event_id
            for column, value in zip(arrays, _numbers(item), strict=True):
                column[i] = value
        rows_kept = np.flatnonzero(keep)
        index = rows_kept.tolist()
        ids = [ids[i] for i in index]
        event_ids = [event_ids[i] for i in index]
        arrays = [column[rows_kept] for column in arrays]
        a_s, a_lo, a_hi, a_p = arrays
        columns = cls(
            ids, event_ids, a_s.tolist(), a_lo.tolist(), a_hi.tolist(), a_p.tolist(), (a_s, a_lo, a_hi, a_p)
        )
        return columns, index, rejects

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
        self._arrays = None
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
        self._arrays = None
        self.item_ids.append(str(item.item_id))
        self.event_ids.append(item.event_id)
        self.stock.append(item.stock_quantity)
        self.min_level.append(item.min_stock_level)
        self.max_level.append(item.max_stock_level)
        self.price.append(item.price)

    def features(self) -> npt.NDArray[np.float64]:
        """The (n, 7) feature matrix, exactly as ``detection.feature_matrix`` builds it."""
        if self._arrays is not None:
            return features_from_columns(*self._arrays)
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


def _numbers(item: StockItem) -> tuple[float, float, float, float]:
    return item.stock_quantity, item.min_stock_level, item.max_stock_level, item.price
