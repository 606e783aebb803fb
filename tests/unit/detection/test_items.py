"""Item parsing: aliases, defaults, field-level rejections, and no input crashes the parser."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detection import ItemValidationError, StockItem, parse_item
from detection.items import MAX_ID_LENGTH, parse_items


class FakeObjectId:
    """Duck-types bson's ObjectId (detection must not import bson)."""

    def __init__(self, hex_: str) -> None:
        self._hex = hex_

    def __str__(self) -> str:
        return self._hex


FakeObjectId.__name__ = "ObjectId"


def reason_of(obj: Any, **kwargs: Any) -> str:
    with pytest.raises(ItemValidationError) as info:
        parse_item(obj, **kwargs)
    assert isinstance(info.value, ValueError)
    assert info.value.reason == str(info.value)
    return info.value.reason


# ---------------------------------------------------------------- aliases and defaults


def test_full_item_and_unknown_fields_ignored() -> None:
    item = parse_item(
        {
            "item_id": "SKU-1",
            "event_id": "e-9",
            "stock_quantity": 120,
            "min_stock_level": 50,
            "max_stock_level": 200,
            "price": 9.5,
            "warehouse": "north",
            "tags": [1, 2],
        }
    )
    assert item == StockItem(
        item_id="SKU-1",
        event_id="e-9",
        stock_quantity=120.0,
        min_stock_level=50.0,
        max_stock_level=200.0,
        price=9.5,
    )
    assert not hasattr(item, "warehouse")
    assert "warehouse" not in item.model_dump()


def test_defaults_are_the_seeds() -> None:
    item = parse_item({"sku": "A"})
    assert (item.stock_quantity, item.min_stock_level, item.max_stock_level, item.price) == (0, 1, 100, 0)
    assert item.event_id is None


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"sku": "S-1"}, "S-1"),
        ({"_id": "abc"}, "abc"),
        ({"_id": 42}, "42"),
        ({"_id": FakeObjectId("65a1b2c3d4e5f60718293a4b")}, "65a1b2c3d4e5f60718293a4b"),
        ({"_id": {"$oid": "65a1b2c3d4e5f60718293a4b"}}, "65a1b2c3d4e5f60718293a4b"),
        ({"item_id": "first", "sku": "second", "_id": "third"}, "first"),
        ({"sku": "  padded  "}, "padded"),
    ],
)
def test_id_aliases(doc: dict[str, Any], expected: str) -> None:
    assert parse_item(doc).item_id == expected


def test_seed_min_max_aliases() -> None:
    item = parse_item({"sku": "x", "stock_quantity": 100, "min_stock": 50, "max_stock": 200, "price": 10})
    assert (item.min_stock_level, item.max_stock_level) == (50.0, 200.0)


def test_numeric_strings_are_accepted() -> None:
    item = parse_item({"sku": "x", "stock_quantity": "100", "price": " 12.5 ", "min_stock_level": "1e1"})
    assert (item.stock_quantity, item.price, item.min_stock_level) == (100.0, 12.5, 10.0)


def test_negative_values_are_data_not_errors() -> None:
    item = parse_item({"sku": "x", "stock_quantity": -5, "price": -1, "min_stock": 300, "max_stock": 200})
    assert item.stock_quantity == -5.0
    assert item.price == -1.0


def test_mapping_that_is_not_a_dict() -> None:
    from types import MappingProxyType

    assert parse_item(MappingProxyType({"sku": "m", "price": 3})).price == 3.0


# ---------------------------------------------------------------- rejections, one class each


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (math.nan, "price: must be a finite number, got NaN"),
        ("NaN", "price: must be a finite number, got NaN"),
        (math.inf, "price: must be a finite number, got inf"),
        (-math.inf, "price: must be a finite number, got -inf"),
        (True, "price: must be a number, got boolean true"),
        (False, "price: must be a number, got boolean false"),
        ("ten", "price: must be a number, got 'ten'"),
        (None, "price: must be a number, got null"),
        ([1], "price: must be a number, got a list"),
        ({"v": 1}, "price: must be a number, got an object"),
        (1e13, "price: must be at most 1e12 in magnitude, got 1e+13"),
        (-2e12, "price: must be at most 1e12 in magnitude, got -2e+12"),
        (10**400, "price: must be at most 1e12 in magnitude, got an integer of about 400 digits"),
    ],
)
def test_rejection_classes_have_field_level_reasons(value: Any, expected: str) -> None:
    assert reason_of({"sku": "x", "price": value}) == expected


def test_bound_is_inclusive() -> None:
    assert parse_item({"sku": "x", "stock_quantity": 1e12, "price": -1e12}).stock_quantity == 1e12


def test_all_field_errors_are_reported_with_the_senders_key() -> None:
    reason = reason_of({"sku": "x", "stock_quantity": "lots", "min_stock": math.nan, "price": True})
    assert reason.split("; ") == [
        "stock_quantity: must be a number, got 'lots'",
        "min_stock: must be a finite number, got NaN",
        "price: must be a number, got boolean true",
    ]


@pytest.mark.parametrize("obj", [[1, 2], 5, "text", None])
def test_non_objects_are_rejected(obj: Any) -> None:
    assert reason_of(obj).startswith("item: must be a JSON object, got ")


def test_require_id_modes() -> None:
    assert reason_of({"price": 1}) == "item_id: required (send it as item_id, sku or _id)"
    assert reason_of({"sku": "   "}) == "sku: must not be empty"
    assert reason_of({"sku": True}) == "sku: must be a string or integer id, got boolean true"
    assert reason_of({"sku": "x" * (MAX_ID_LENGTH + 1)}).startswith("sku: must be at most 256 characters")
    # training mode: the id is optional and an unusable one is dropped, the numbers still count
    assert parse_item({"price": 1}, require_id=False).item_id is None
    assert parse_item({"sku": "", "price": 2}, require_id=False).price == 2.0
    # ... but numeric errors are errors in both modes, and a missing id is reported alongside them
    assert reason_of({"price": "x"}, require_id=False) == "price: must be a number, got 'x'"
    assert reason_of({"price": "x"}).split("; ") == [
        "price: must be a number, got 'x'",
        "item_id: required (send it as item_id, sku or _id)",
    ]


def test_parse_items_batch() -> None:
    objs = [{"sku": "a", "price": 1}, 7, {"sku": "b", "price": "x"}, {"price": 2}, {"sku": "c"}]
    items, rejects = parse_items(objs)
    assert [it.item_id for it in items] == ["a", "c"]
    assert rejects == [
        (1, "item: must be a JSON object, got an integer"),
        (2, "price: must be a number, got 'x'"),
        (3, "item_id: required (send it as item_id, sku or _id)"),
    ]
    items, rejects = parse_items(objs, require_id=False)
    assert [it.price for it in items] == [1.0, 2.0, 0.0]
    assert [index for index, _ in rejects] == [1, 2]


# ---------------------------------------------------------------- property: no input crashes it

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["100", "1e3", " 7 ", "nan", "-inf", "1_000", "0x10", "", "  "])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(
    [
        "item_id",
        "sku",
        "_id",
        "event_id",
        "stock_quantity",
        "min_stock_level",
        "max_stock_level",
        "price",
        "min_stock",
        "max_stock",
        "other",
    ]
)
documents = st.dictionaries(field_names, json_values, max_size=8)


def _check(obj: Any, require_id: bool) -> None:
    try:
        item = parse_item(obj, require_id=require_id)
    except ItemValidationError as exc:
        assert exc.reason.strip()
        assert ": " in exc.reason
        return
    assert isinstance(item, StockItem)
    for value in (item.stock_quantity, item.min_stock_level, item.max_stock_level, item.price):
        assert math.isfinite(value)
        assert abs(value) <= 1e12
    if require_id:
        assert item.item_id


@settings(max_examples=400, deadline=None)
@given(documents, st.booleans())
def test_no_document_crashes_the_parser(doc: dict[str, Any], require_id: bool) -> None:
    _check(doc, require_id)


@settings(max_examples=200, deadline=None)
@given(json_values, st.booleans())
def test_no_json_value_crashes_the_parser(obj: Any, require_id: bool) -> None:
    _check(obj, require_id)


@settings(max_examples=100, deadline=None)
@given(st.lists(json_values | documents, max_size=6), st.booleans())
def test_batch_agrees_with_single_parses(objs: list[Any], require_id: bool) -> None:
    items, rejects = parse_items(objs, require_id=require_id)
    assert len(items) + len(rejects) == len(objs)
    rejected = dict(rejects)
    kept = iter(items)
    for index, obj in enumerate(objs):
        if index in rejected:
            with pytest.raises(ItemValidationError) as info:
                parse_item(obj, require_id=require_id)
            assert info.value.reason == rejected[index]
        else:
            assert next(kept) == parse_item(obj, require_id=require_id)
