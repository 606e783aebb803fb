"""The column fast path never disagrees with detection.parse_item (the definition of validity)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.scoring.columns import ITEM_FIELDS, ItemColumns
from consumer.wire.schemas import EventItem
from detection import ItemValidationError, StockItem, feature_matrix, parse_item

KEYS = (
    "item_id",
    "event_id",
    "stock_quantity",
    "min_stock_level",
    "max_stock_level",
    "price",
    "sku",
    "_id",
    "min_stock",
    "max_stock",
    "note",
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**14), max_value=10**14),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e12, max_value=1e12),
    st.text(max_size=8),
    st.sampled_from(["SKU-1", " SKU-2", "SKU-3 ", "", " ", "\x1c", "x\x85", "12", "1e3", "NaN", "a" * 257]),
    st.lists(st.integers(), max_size=2),
)
objects = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)


def test_item_fields_are_stockitems_fields_in_order() -> None:
    assert tuple(StockItem.model_fields) == ITEM_FIELDS
    # the event documents the same fields, then the input's other fields (consumer.wire.context)
    assert tuple(EventItem.model_fields) == (*ITEM_FIELDS, "attributes", "attributes_truncated")


@settings(max_examples=1500, deadline=None)
@given(objects)
def test_fast_path_agrees_with_parse_item(obj: dict[str, Any]) -> None:
    cols = ItemColumns()
    accepted = cols.append_fast(obj)
    try:
        parsed = parse_item(obj)
    except ItemValidationError:
        assert not accepted, f"fast path accepted an invalid item: {obj!r}"
        return
    if not accepted:
        return  # declined: parse_item decides (allowed for anything)
    assert cols.item(0) == parsed.model_dump(mode="json")
    expected = feature_matrix([parsed])
    got = cols.features()
    assert np.array_equal(got, expected) or all(
        math.isclose(a, b) for a, b in zip(got[0], expected[0], strict=True)
    )


def test_plain_items_take_the_fast_path() -> None:
    cols = ItemColumns()
    assert cols.append_fast({"item_id": "A", "stock_quantity": 5, "price": 2.5, "extra": [1]})
    assert cols.append_fast({"item_id": "B", "event_id": "e-1"})
    assert not cols.append_fast({"sku": "C"})  # aliases: parse_item's job
    assert not cols.append_fast({"item_id": "D", "price": "3"})  # numeric strings: parse_item's job
    assert cols.item(1) == parse_item({"item_id": "B", "event_id": "e-1"}).model_dump(mode="json")
    assert np.array_equal(
        cols.features(),
        feature_matrix(
            [parse_item({"item_id": "A", "stock_quantity": 5, "price": 2.5}), parse_item({"item_id": "B"})]
        ),
    )


plain_numbers = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12), st.floats(min_value=-1e12, max_value=1e12)
)
plain_objects = st.fixed_dictionaries(
    {
        "item_id": st.sampled_from(["SKU-1", "sku-2", "x" * 256]),
        "event_id": st.one_of(st.none(), st.sampled_from(["e-1", "e-2"])),
        "stock_quantity": plain_numbers,
        "min_stock_level": plain_numbers,
        "max_stock_level": plain_numbers,
        "price": plain_numbers,
    }
)
batches = st.one_of(
    st.lists(plain_objects, min_size=1, max_size=12),  # the usual batch: every check passes at once
    st.lists(st.one_of(plain_objects, objects), max_size=12),  # odd rows among plain ones
)


@settings(max_examples=800, deadline=None)
@given(batches)
def test_batch_path_agrees_with_parse_item_row_by_row(objs: list[dict[str, Any]]) -> None:
    cols, index, rejects = ItemColumns.from_objects(objs)
    expected_index, expected_rejects, parsed = [], [], []
    for i, obj in enumerate(objs):
        try:
            item = parse_item(obj)
        except ItemValidationError as exc:
            expected_rejects.append((i, exc.reason))
        else:
            expected_index.append(i)
            parsed.append(item)
    assert index == expected_index
    assert rejects == expected_rejects  # parse_item's reasons, in input order
    assert len(cols) == len(parsed)
    assert [cols.item(j) for j in range(len(cols))] == [p.model_dump(mode="json") for p in parsed]
    if parsed:
        assert np.array_equal(cols.features(), feature_matrix(parsed), equal_nan=True)


def test_batch_path_keeps_order_around_odd_rows() -> None:
    objs = [
        {"item_id": "A", "event_id": "e-1", "stock_quantity": 5, "min_stock_level": 1, "max_stock_level": 9, "price": 2.5},
        {"sku": "B", "price": "3"},  # alias and numeric string: parse_item accepts it, in place
        {"item_id": "C", "price": float("nan")},  # rejected with parse_item's reason
        {"item_id": " D ", "stock_quantity": True},
        {"item_id": "E", "event_id": "e-5", "stock_quantity": 10**400},
        {"item_id": "F"},
    ]  # fmt: skip
    cols, index, rejects = ItemColumns.from_objects(objs)
    assert index == [0, 1, 5]
    assert cols.item_ids == ["A", "B", "F"]
    assert [i for i, _ in rejects] == [2, 3, 4]
    assert rejects[0][1] == "price: must be a finite number, got NaN"
    assert cols.item(1) == parse_item(objs[1]).model_dump(mode="json")
    assert ItemColumns.from_objects([]) == (ItemColumns(), [], [])
