"""The batch fast path of :func:`detection.parse_updates`: columns pulled out of a list of dicts at once.

Each field is taken from every object with one C-level ``map(itemgetter(key), ...)`` (``dict.get``
where some object lacks it) and checked column by column (the set of its types, numpy for
finiteness and magnitude), so a batch of plain
updates costs no Python bytecode per message. Only the plain, unambiguous case is taken here —
canonical keys, ``str`` ids without surrounding whitespace, ``int``/``float`` numbers, absent or
numeric ``occurred_at`` — and every other row is marked for the per-row parser
(``detection.updates``), which stays the single definition of validity.
``tests/unit/detection/test_update_columns.py`` holds the two to the same output.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from itertools import repeat
from operator import is_, is_not, itemgetter
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from detection.items import EARLIEST_TIME, LATEST_TIME, MAX_ID_LENGTH, MAX_MAGNITUDE

__all__ = ["FastColumns", "fast_columns", "plain_ids"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
NUMBER_KEYS: Final = ("stock_quantity", "min_stock_level", "max_stock_level", "price")
_ALIASES: Final = frozenset(("min_stock", "max_stock"))  # used only when the canonical key is absent
_ABSENT: Final = float("nan")  # the default for an absent key: found again by identity
_NUMBER_TYPES: Final = frozenset((int, float))
_INT: Final = frozenset((int,))
_TIME_TYPES: Final = frozenset((int, float, type(None)))
_TEXT_TYPES: Final = frozenset((str, type(None)))
_DICT: Final = frozenset((dict,))
_get = dict.get

FastColumns = tuple[list[Any], list[FloatArray], list[Any], list[Any], BoolArray]


def fast_columns(objs: Sequence[Any], group_field: str) -> FastColumns | None:
    """``(ids, [stock, min, max, price, occurred_at], groups, event_ids, bad)`` of a list of dicts,
    or None when it is not one. Rows with ``bad`` set hold placeholders: parse them one by one."""
    n = len(objs)
    if not n or _types(objs) != _DICT:
        return None
    whole: dict[str, list[Any]] = {}  # the fields every object has, each taken with one itemgetter map
    for key in dict.fromkeys(("item_id", *NUMBER_KEYS, "occurred_at", group_field, "event_id")):
        with suppress(KeyError):  # some object lacks it
            whole[key] = list(map(itemgetter(key), objs))
    # objects holding exactly those fields (the usual batch): no alias, nothing else to look for
    keys: set[str] = set(whole) if sum(map(len, objs)) == len(whole) * n else set().union(*objs)

    def _column(key: str, default: Any) -> list[Any]:
        got = whole.get(key)
        return got if got is not None else list(map(_get, objs, repeat(key), repeat(default)))

    bad = np.zeros(n, np.bool_)
    ids = _column("item_id", None)
    if not plain_ids(ids):
        bad |= [not _plain_id(v) for v in ids]
    numbers = []
    for key in NUMBER_KEYS:
        values, mask = _numbers(_column(key, _ABSENT)) if key in keys else (np.full(n, np.nan), None)
        numbers.append(values)
        if mask is not None:
            bad |= mask
    if not _ALIASES.isdisjoint(keys):
        bad |= [not _ALIASES.isdisjoint(o) for o in objs]
    times, mask = (
        _times(_column("occurred_at", None)) if "occurred_at" in keys else (np.full(n, np.nan), None)
    )
    numbers.append(times)
    if mask is not None:
        bad |= mask
    groups = _text(_column(group_field, None)) if group_field and group_field in keys else [None] * n
    events = _text(_column("event_id", None)) if "event_id" in keys else [None] * n
    return ids, numbers, groups, events, bad


def _types(values: Sequence[Any]) -> set[type]:
    """``set(map(type, values))``, cheaper for a column of one type (the usual one): no set to fill."""
    types = list(map(type, values))
    one = types[:1]
    # list equality tries identity first and stops at the first other type
    return set(one) if types == one * len(types) else set(types)


def _plain_id(v: Any) -> bool:
    return type(v) is str and 0 < len(v) <= MAX_ID_LENGTH and not v[0].isspace() and not v[-1].isspace()


def plain_ids(ids: list[Any]) -> bool:
    """``_plain_id`` of every id without a Python-level loop (``strip`` = the isspace rule)."""
    try:  # strip returns an unpadded exact str as itself: one pass rejects non-str, subclasses, padding
        if not all(map(is_, map(str.strip, ids), ids)):
            return False
    except TypeError:  # not a str
        return False
    lengths = set(map(len, ids))
    return 0 not in lengths and max(lengths) <= MAX_ID_LENGTH


def _numbers(values: list[Any]) -> tuple[FloatArray, BoolArray | None]:
    """The column (NaN = absent) and its rows that are not a plain finite number within the limit."""
    types = _types(values)
    if types <= _NUMBER_TYPES:
        n = len(values)
        try:  # ints alone convert faster through int64, exactly where it matters (limit < 2**53)
            column = (
                np.fromiter(values, np.int64, n).astype(np.float64)
                if types == _INT
                else np.fromiter(values, np.float64, n)
            )
        except OverflowError:  # an int beyond int64 (ints alone) or float range: row by row below
            pass
        else:
            plain = np.abs(column) <= MAX_MAGNITUDE  # NaN compares False
            if plain.all():  # the usual column: one check
                return column, None
            nan = np.isnan(column)
            out_of_range = ~nan & ~plain
            if not nan.any():
                return column, out_of_range
            explicit = nan & ~np.fromiter(map(is_, values, repeat(_ABSENT)), np.bool_, n)
            return column, out_of_range | explicit
    ok = [v is _ABSENT or (type(v) in _NUMBER_TYPES and -MAX_MAGNITUDE <= v <= MAX_MAGNITUDE) for v in values]
    column = np.array([v if k else np.nan for v, k in zip(values, ok, strict=True)], dtype=np.float64)
    return column, ~np.array(ok, dtype=np.bool_)


def _times(values: list[Any]) -> tuple[FloatArray, BoolArray | None]:
    """``occurred_at`` in epoch seconds: numbers and absent values here, ISO strings parsed per row."""
    if _types(values) <= _TIME_TYPES:
        try:
            column = np.array(values, dtype=np.float64)  # None -> NaN
        except OverflowError:
            pass
        else:
            bad = (column < EARLIEST_TIME) | (column > LATEST_TIME)  # inf too; NaN compares False
            nan = np.isnan(column)
            if nan.any():
                bad |= nan & np.fromiter(map(is_not, values, repeat(None)), np.bool_, len(values))
            return column, bad if bad.any() else None
    column = np.full(len(values), np.nan)
    mask = np.zeros(len(values), np.bool_)
    for i, v in enumerate(values):
        if type(v) is str:
            try:
                parsed = datetime.fromisoformat(v.strip())
                column[i] = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
            except (ValueError, OverflowError):
                mask[i] = True
            else:
                mask[i] = not EARLIEST_TIME <= column[i] <= LATEST_TIME
        elif v is not None:
            mask[i] = True  # numbers mixed with strings, bools, ...: the per-row parser decides
    return column, mask


def _text(values: list[Any]) -> list[Any]:
    """Values as text (None stays None), as the per-row parser's ``str(value)``."""
    if _types(values) <= _TEXT_TYPES:
        return values
    return [None if v is None else str(v) for v in values]
