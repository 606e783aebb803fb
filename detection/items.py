"""One inventory item state and its validation.

Upstream systems (warehouse services, MongoDB exports, files) send item states as JSON-like
mappings. :func:`parse_item` turns one into a frozen :class:`StockItem` or raises
:class:`ItemValidationError` with a field-level, human-readable ``reason`` such as
``"price: must be a finite number, got NaN"``; :func:`parse_items` does a batch and returns the
rejects with their index instead of raising.

Decisions, and why:

* **Defaults are the seed's**: a missing ``stock_quantity`` is 0, ``min_stock_level`` 1,
  ``max_stock_level`` 100, ``price`` 0 (``item.get(..., default)`` in the original design).
* **Aliases**: the id is ``item_id``, ``sku`` or Mongo's ``_id`` (first present wins, in that
  order; ints and ObjectIds become ``str``, as does Extended JSON ``{"$oid": "..."}``); the seed's
  worked example uses ``min_stock``/``max_stock`` for the two levels, which are accepted too.
* **Unknown fields are ignored** (upstream documents carry many more) and never kept.
* **Numbers** must be finite and at most :data:`MAX_MAGNITUDE` (1e12) in absolute value. The
  bound keeps every derived feature finite (``stock * price`` <= 1e24) and representable after
  scaling in the float32 the isolation trees compare in; no real stock level or price is near it,
  so a larger value is a unit or encoding bug, not inventory. NaN, +/-inf, booleans (``True`` is
  not a quantity even though Python says ``True == 1``), ``null`` (explicitly unknown is not the
  same as absent, so the default is not applied) and non-numeric strings are rejected.
* **Numeric strings are accepted** (``"100"``, ``" 12.5 "``, ``"1e3"``): many upstream systems
  (CSV exports, some ERPs) quote numbers, and the value is unambiguous. ``"NaN"``/``"inf"`` are
  still rejected.
* **Negative values are valid input**: negative stock, a negative price or ``min > max`` are
  data-quality anomalies for the model to score, not parse errors.
* **Ids**: at most :data:`MAX_ID_LENGTH` characters, surrounding whitespace stripped. With
  ``require_id=True`` (scoring) a missing or empty id is an error; with ``require_id=False``
  (training from files) the id is optional and an unusable id is dropped (``item_id=None``).

Speed: the checks are pydantic-core constraints; the only Python code on the hot path is one
model-level pre-check that rejects booleans and converts non-string Mongo ids (about +0.4 us
per item). Error messages are built only for rejected input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

__all__ = [
    "ITEM_INPUT_KEYS",
    "MAX_ID_LENGTH",
    "MAX_MAGNITUDE",
    "ItemValidationError",
    "StockItem",
    "parse_item",
    "parse_items",
]

MAX_MAGNITUDE: Final = 1e12
# occurred_at in epoch seconds: what a datetime can hold (years 1 to 9999), so every time formats
EARLIEST_TIME: Final = -62135596800.0
LATEST_TIME: Final = 253402300799.0
MAX_ID_LENGTH: Final = 256

_Number = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]
_Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_LENGTH)]

_ID_KEYS: Final = ("item_id", "sku", "_id")
_NUMERIC_KEYS: Final = (
    "stock_quantity",
    "min_stock_level",
    "max_stock_level",
    "price",
    "min_stock",
    "max_stock",
)
ITEM_INPUT_KEYS: Final = (*_ID_KEYS, *_NUMERIC_KEYS)
"""Every key the parser reads (ids, numbers and their aliases): what a reader must fetch."""


class _Rejected:
    """Stands in for a boolean so that pydantic reports a field-level type error for it."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


class StockItem(BaseModel):
    """The state of one item: the four numbers the features are built from, plus ids.

    Construct it with :func:`parse_item` (clear reasons) or ``StockItem.model_validate``; field
    names and their aliases are both accepted. ``event_id`` is the upstream event's id, if any.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    item_id: _Id | None = Field(default=None, validation_alias=AliasChoices(*_ID_KEYS))
    event_id: _Id | None = None
    stock_quantity: _Number = 0.0
    min_stock_level: _Number = Field(
        default=1.0, validation_alias=AliasChoices("min_stock_level", "min_stock")
    )
    max_stock_level: _Number = Field(
        default=100.0, validation_alias=AliasChoices("max_stock_level", "max_stock")
    )
    price: _Number = 0.0

    @model_validator(mode="before")
    @classmethod
    def _precheck(cls, data: Any) -> Any:
        """Reject booleans as numbers and turn Mongo ids into strings (copies only when needed)."""
        if type(data) is not dict:
            return data
        copied = False
        for key in _NUMERIC_KEYS:
            value = data.get(key)
            if value is True or value is False:
                if not copied:
                    data, copied = dict(data), True
                data[key] = _Rejected(value)
        oid = data.get("_id")
        if oid is not None and not isinstance(oid, str | int | float):
            converted = _mongo_id(oid)
            if not copied:
                data = dict(data)
            data["_id"] = converted
        return data


def _mongo_id(value: object) -> object:
    """ObjectId (duck-typed: detection must not import bson) and ``{"$oid": s}`` become ``str``."""
    if type(value).__name__ == "ObjectId":
        return str(value)
    if isinstance(value, Mapping) and len(value) == 1 and isinstance(value.get("$oid"), str):
        return value["$oid"]
    return value


class ItemValidationError(ValueError):
    """An item state could not be used; ``reason`` lists every problem as ``field: message``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_item(obj: Any, *, require_id: bool = True) -> StockItem:
    """Validate one JSON-like object into a :class:`StockItem` or raise :class:`ItemValidationError`."""
    data = obj if type(obj) is dict else _as_dict(obj)
    try:
        item = StockItem.model_validate(data)
    except ValidationError as exc:
        return _recover_or_raise(data, exc, require_id=require_id)
    if require_id and item.item_id is None:
        raise ItemValidationError(_MISSING_ID)
    return item


def parse_items(
    objs: Iterable[Any], *, require_id: bool = True
) -> tuple[list[StockItem], list[tuple[int, str]]]:
    """Validate a batch: returns the valid items (in order) and ``(index, reason)`` of the rejects."""
    items: list[StockItem] = []
    rejects: list[tuple[int, str]] = []
    validate = StockItem.model_validate
    for index, obj in enumerate(objs):
        try:
            item = validate(obj) if type(obj) is dict else parse_item(obj, require_id=require_id)
        except ValidationError:
            try:
                item = parse_item(obj, require_id=require_id)
            except ItemValidationError as exc:
                rejects.append((index, exc.reason))
                continue
        except ItemValidationError as exc:
            rejects.append((index, exc.reason))
            continue
        if require_id and item.item_id is None:
            rejects.append((index, _MISSING_ID))
            continue
        items.append(item)
    return items, rejects


# ---------------------------------------------------------------------------- error path

_MISSING_ID: Final = "item_id: required (send it as item_id, sku or _id)"


def _as_dict(obj: Any) -> dict[Any, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    raise ItemValidationError(f"item: must be a JSON object, got {_describe_type(obj)}")


def _recover_or_raise(data: dict[Any, Any], exc: ValidationError, *, require_id: bool) -> StockItem:
    """Build the reason, or (``require_id=False``) retry without an unusable id."""
    errors = exc.errors(include_url=False, include_context=False)
    id_only = all(err["loc"] and err["loc"][0] in _ID_KEYS for err in errors)
    if id_only and not require_id:
        return StockItem.model_validate({k: v for k, v in data.items() if k not in _ID_KEYS})
    reasons: dict[str, str] = {}
    for err in errors:
        loc = err["loc"]
        field = str(loc[0]) if loc else "item"
        if field not in reasons:  # one reason per field, first wins
            reasons[field] = _message(field, data.get(field, err["input"]), err["type"])
    if require_id and not any(data.get(key) not in (None, "") for key in _ID_KEYS):
        reasons.setdefault("item_id", _MISSING_ID.partition(": ")[2])
    raise ItemValidationError("; ".join(f"{field}: {message}" for field, message in reasons.items()))


def _message(field: str, value: Any, error_type: str) -> str:  # noqa: PLR0911 (one per rejection class)
    """A planner-readable message for one rejected field value."""
    if isinstance(value, _Rejected):
        value = value.value
    if field in _ID_KEYS or field == "event_id":
        return _id_message(value, error_type)
    if value is True or value is False:
        return f"must be a number, got boolean {str(value).lower()}"
    if value is None:
        return "must be a number, got null"
    number: float | None = None
    if isinstance(value, int) and abs(value) > 2**1023:  # beyond float range
        return f"must be at most 1e12 in magnitude, got an integer of about {value.bit_length() * 0.30103:.0f} digits"
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str | bytes):
        try:
            number = float(value)
        except (ValueError, OverflowError):
            return f"must be a number, got {_short(value)}"
    else:
        return f"must be a number, got {_describe_type(value)}"
    if math.isnan(number):
        return "must be a finite number, got NaN"
    if math.isinf(number):
        return f"must be a finite number, got {'-' if number < 0 else ''}inf"
    if not abs(number) <= MAX_MAGNITUDE:
        return f"must be at most 1e12 in magnitude, got {number:.4g}"
    return f"invalid value {_short(value)} ({error_type})"


def _id_message(value: Any, error_type: str) -> str:
    if isinstance(value, str):
        if not value.strip():
            return "must not be empty"
        if len(value.strip()) > MAX_ID_LENGTH:
            return f"must be at most {MAX_ID_LENGTH} characters, got {len(value.strip())}"
    return f"must be a string or integer id, got {_describe_type(value)}"


def _describe_type(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return f"boolean {str(value).lower()}"
    names = {dict: "an object", list: "a list", tuple: "a list", str: "a string", int: "an integer"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
