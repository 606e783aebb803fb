"""Change events as columns: partial updates (item id + changed fields) ready for batch scoring.

An update names an item and carries only what changed; absent numbers are NaN here and are
merged onto the item's last accepted state by the detector. Values are checked as
:mod:`detection.items` checks states (finite, at most 1e12, no booleans, numeric strings ok);
``occurred_at`` is an ISO-8601 string (``Z`` allowed) or epoch seconds. The peer-group field
(``category`` by default) is kept as text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from detection.items import EARLIEST_TIME, LATEST_TIME, MAX_ID_LENGTH, MAX_MAGNITUDE, ItemValidationError
from detection.update_columns import fast_columns

__all__ = ["REQUIRED_FIELDS", "MissingFieldError", "UpdateBatch", "parse_updates", "parse_updates_by_row"]

FloatArray = npt.NDArray[np.float64]

REQUIRED_FIELDS: Final = ("stock_quantity", "min_stock_level", "max_stock_level", "price")
_ALIASES: Final = {
    "stock_quantity": ("stock_quantity",),
    "min_stock_level": ("min_stock_level", "min_stock"),
    "max_stock_level": ("max_stock_level", "max_stock"),
    "price": ("price",),
}
_ID_KEYS: Final = ("item_id", "sku", "_id")
# A number sent as text: ASCII decimal only (float() also takes "1_000", "١٢", "nan", "infinity").
_NUMERIC_TEXT: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class MissingFieldError(ItemValidationError):
    """An update of an item with no known state lacks numbers: dead-letter it as ``missing_field``."""

    kind: Final = "missing_field"

    def __init__(self, item_id: str, fields: Sequence[str]) -> None:
        self.item_id = item_id
        self.fields = tuple(fields)
        super().__init__(
            f"missing_field: {', '.join(self.fields)} (item {item_id!r} has no known state; "
            "its first update must carry the full state)"
        )


@dataclass(frozen=True, slots=True, eq=False)
class UpdateBatch:
    """Columns of ``n`` updates in stream order; NaN marks a field the update did not carry."""

    item_ids: list[str]
    stock: FloatArray
    min: FloatArray
    max: FloatArray
    price: FloatArray
    occurred_at: FloatArray  # epoch seconds
    groups: list[str | None]
    event_ids: list[str | None]

    def __len__(self) -> int:
        return len(self.item_ids)

    def rows(self, keep: Sequence[int]) -> UpdateBatch:
        """The updates at ``keep``, in that order."""
        idx = np.asarray(keep, dtype=np.intp)
        return UpdateBatch([self.item_ids[i] for i in keep], self.stock[idx], self.min[idx],
                           self.max[idx], self.price[idx], self.occurred_at[idx],
                           [self.groups[i] for i in keep], [self.event_ids[i] for i in keep])  # fmt: skip

    @classmethod
    def from_columns(
        cls,
        item_ids: Sequence[str],
        *,
        stock: npt.ArrayLike,
        min_: npt.ArrayLike,
        max_: npt.ArrayLike,
        price: npt.ArrayLike,
        occurred_at: npt.ArrayLike | None = None,
        groups: Sequence[str | None] | None = None,
        event_ids: Sequence[str | None] | None = None,
    ) -> UpdateBatch:
        """A batch from ready columns (NaN = absent), e.g. built by the consumer's column parser."""
        n = len(item_ids)

        def col(values: npt.ArrayLike | None) -> FloatArray:
            out = np.full(n, np.nan) if values is None else np.asarray(values, dtype=np.float64)
            if out.shape != (n,):
                raise ValueError(f"column of shape {out.shape}, expected ({n},)")
            return out

        return cls(list(item_ids), col(stock), col(min_), col(max_), col(price), col(occurred_at),
                   list(groups) if groups is not None else [None] * n,
                   list(event_ids) if event_ids is not None else [None] * n)  # fmt: skip


def parse_updates(
    messages: Iterable[Mapping[str, Any]], *, group_field: str = "category"
) -> tuple[UpdateBatch, list[tuple[int, str]]]:
    """Validate change events into an :class:`UpdateBatch`; returns it and ``(index, reason)`` rejects.
    ``group_field`` is the peer-group key (``""``: no peer grouping, every group None).

    A list of dicts takes the columnar fast path (:mod:`detection.update_columns`); the rows it
    does not take, and any other input, are parsed one by one (:func:`parse_updates_by_row`).
    """
    objs = messages if isinstance(messages, list) else list(messages)
    fast = fast_columns(objs, group_field)
    if fast is None:
        return parse_updates_by_row(objs, group_field=group_field)
    ids, cols, groups, event_ids, bad = fast
    if not bad.any():
        stock, min_, max_, price, occurred_at = cols
        return UpdateBatch(ids, stock, min_, max_, price, occurred_at, groups, event_ids), []
    rejects: list[tuple[int, str]] = []
    keep = ~bad
    for i in np.flatnonzero(bad).tolist():
        try:
            ids[i], values, groups[i], event_ids[i] = _parse_one(objs[i], group_field)
        except ItemValidationError as exc:
            rejects.append((i, exc.reason))
            continue
        keep[i] = True
        for column, value in zip(cols, values, strict=True):
            column[i] = value
    rows = np.flatnonzero(keep)
    index = rows.tolist()
    stock, min_, max_, price, occurred_at = (c[rows] for c in cols)
    batch = UpdateBatch([ids[i] for i in index], stock, min_, max_, price, occurred_at,
                        [groups[i] for i in index], [event_ids[i] for i in index])  # fmt: skip
    return batch, rejects


def parse_updates_by_row(
    messages: Iterable[Mapping[str, Any]], *, group_field: str = "category"
) -> tuple[UpdateBatch, list[tuple[int, str]]]:
    """:func:`parse_updates` one message at a time: the definition the fast path is held to."""
    ids: list[str] = []
    cols: list[list[float]] = [[], [], [], [], []]
    groups: list[str | None] = []
    event_ids: list[str | None] = []
    rejects: list[tuple[int, str]] = []
    for index, msg in enumerate(messages):
        try:
            item_id, values, group, event = _parse_one(msg, group_field)
        except ItemValidationError as exc:
            rejects.append((index, exc.reason))
            continue
        ids.append(item_id)
        for c, v in zip(cols, values, strict=True):
            c.append(v)
        groups.append(group)
        event_ids.append(event)
    stock, min_, max_, price, occurred_at = (np.array(c, dtype=np.float64) for c in cols)
    return UpdateBatch(ids, stock, min_, max_, price, occurred_at, groups, event_ids), rejects


def _parse_one(msg: Mapping[str, Any], group_field: str) -> tuple[str, list[float], str | None, str | None]:
    """One message: id, the four numbers and ``occurred_at`` (NaN = absent), group, event id."""
    item_id = _item_id(msg)
    values = [_field(msg, key) for key in REQUIRED_FIELDS]
    values.append(_time(msg.get("occurred_at")))
    group = msg.get(group_field) if group_field else None  # "": no peer grouping
    event = msg.get("event_id")
    return item_id, values, None if group is None else str(group), None if event is None else str(event)


def _item_id(msg: Mapping[str, Any]) -> str:
    for key in _ID_KEYS:
        value = msg.get(key)
        if value is not None and not isinstance(value, bool) and isinstance(value, str | int):
            text = str(value).strip()
            if len(text) > MAX_ID_LENGTH:
                raise ItemValidationError(f"{key}: at most {MAX_ID_LENGTH} characters, got {len(text)}")
            if text:
                return text
    raise ItemValidationError("item_id: required (send it as item_id, sku or _id)")


def _field(msg: Mapping[str, Any], key: str) -> float:
    for alias in _ALIASES[key]:
        if alias in msg:
            return _number(alias, msg[alias])
    return math.nan


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise ItemValidationError(f"{key}: must be a number, got {value!r}")
    if isinstance(value, str) and not _NUMERIC_TEXT.fullmatch(value.strip()):
        raise ItemValidationError(f"{key}: must be a number, got {value[:40]!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ItemValidationError(f"{key}: must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number) or abs(number) > MAX_MAGNITUDE:
        raise ItemValidationError(f"{key}: must be a finite number of at most 1e12, got {number!r}")
    return number


def _iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def _time(value: Any) -> float:
    """Epoch seconds of ``occurred_at`` (NaN when absent)."""
    if value is None:
        return math.nan
    if isinstance(value, datetime):  # a native date (MongoDB's, naive in UTC)
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    elif isinstance(value, str) and _NUMERIC_TEXT.fullmatch(value.strip()) and not _iso(value):
        value = float(value)  # epoch seconds as text ("20260301" stays the ISO date it also is)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            number = math.inf
        if EARLIEST_TIME <= number <= LATEST_TIME:  # finite, and a time a datetime can hold
            return number
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
            seconds = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
        except (ValueError, OverflowError):  # not ISO-8601, or a time out of datetime's range
            pass
        else:
            if EARLIEST_TIME <= seconds <= LATEST_TIME:  # year 1 at +01:00 is still year 0 in UTC
                return seconds
    raise ItemValidationError(
        f"occurred_at: must be an ISO-8601 time, a date or epoch seconds, got {str(value)[:40]!r}"
    )
