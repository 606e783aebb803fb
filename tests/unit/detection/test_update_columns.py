"""parse_updates' columnar fast path gives exactly what the per-row parser gives, rejects included."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from detection import UpdateBatch, parse_updates
from detection.update_columns import fast_columns
from detection.updates import parse_updates_by_row

KEYS = ("item_id", "sku", "_id", "event_id", "stock_quantity", "min_stock_level", "max_stock_level",
        "price", "min_stock", "max_stock", "occurred_at", "category", "note")  # fmt: skip
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**14), max_value=10**14),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e12, max_value=1e12),
    st.text(max_size=6),
    st.sampled_from(
        [
            "SKU-1",
            " SKU-2",
            "SKU-3 ",
            "",
            " ",
            "\x1c",
            "12",
            "1e3",
            "NaN",
            "inf",
            "a" * 257,
            "2026-11-30T10:00:00Z",
            "2026-11-30 10:00:00",
            " 2026-11-30T10:00:00+02:00 ",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
        ]
    ),
    st.lists(st.integers(), max_size=2),
)
plain = st.fixed_dictionaries(
    {"item_id": st.sampled_from(["a", "b", "c", "SKU-9"])},
    optional={
        "stock_quantity": st.integers(-5, 10**6) | st.floats(-1e12, 1e12),
        "min_stock_level": st.integers(0, 100),
        "max_stock_level": st.integers(0, 1000),
        "price": st.floats(0, 1000),
        "occurred_at": st.integers(0, 2**31) | st.none(),
        "event_id": st.text(max_size=4) | st.none(),
        "category": st.sampled_from(["x", "y"]) | st.none() | st.integers(0, 3),
    },
)
objects = st.dictionaries(st.sampled_from(KEYS), values, max_size=9)


def assert_same(
    a: tuple[UpdateBatch, list[tuple[int, str]]], b: tuple[UpdateBatch, list[tuple[int, str]]]
) -> None:
    (x, rx), (y, ry) = a, b
    assert rx == ry
    assert x.item_ids == y.item_ids
    assert x.groups == y.groups
    assert x.event_ids == y.event_ids
    for got_text, want_text in ((x.item_ids, y.item_ids), (x.groups, y.groups), (x.event_ids, y.event_ids)):
        assert list(map(type, got_text)) == list(map(type, want_text))  # exact str, never a subclass
    for name in ("stock", "min", "max", "price", "occurred_at"):
        got, want = getattr(x, name), getattr(y, name)
        assert got.dtype == want.dtype == np.float64
        np.testing.assert_array_equal(got, want, err_msg=name)


@settings(max_examples=400, deadline=None)
@given(st.lists(objects | plain, max_size=12))
def test_fast_path_agrees_with_the_row_parser(batch: list[dict[str, Any]]) -> None:
    assert_same(parse_updates(batch), parse_updates_by_row(batch))


@settings(max_examples=200, deadline=None)
@given(st.lists(plain, min_size=1, max_size=12))
def test_plain_partial_updates_take_the_fast_path_whole(batch: list[dict[str, Any]]) -> None:
    fast = fast_columns(batch, "category")
    assert fast is not None
    assert not fast[4].any()  # no row handed to the row parser
    assert_same(parse_updates(batch), parse_updates_by_row(batch))


def test_edge_cases_row_by_row() -> None:
    batch: list[Any] = [
        {"item_id": "a", "stock_quantity": 5},  # partial: the rest absent (NaN)
        {"item_id": "a", "stock_quantity": 6, "price": None},  # explicit null: rejected
        {"item_id": "b", "stock_quantity": math.nan},  # NaN: rejected, not "absent"
        {"item_id": "b", "stock_quantity": math.inf},
        {"item_id": "c", "stock_quantity": 2e12},
        {"item_id": "c", "stock_quantity": True},
        {"item_id": " d ", "stock_quantity": "7"},  # stripped id, numeric string
        {"sku": "e", "min_stock": 3, "max_stock": 9},  # aliases
        {"item_id": "f", "min_stock_level": 1, "min_stock": 99},  # the canonical key wins
        {"item_id": "g", "occurred_at": "2026-11-30T10:00:00Z", "category": 7, "event_id": 12},
        {"item_id": "g", "occurred_at": 10**400},
        {"item_id": "g", "occurred_at": math.nan},
        {"item_id": "g", "occurred_at": "0001-01-01T00:00:00+00:00"},  # the earliest time a datetime holds
        {"item_id": "h", "stock_quantity": 10**400},
        {"item_id": "", "sku": "i", "stock_quantity": 1},
        {"stock_quantity": 1},
        {"item_id": "a", "stock_quantity": 7},  # a repeated item
        {"item_id": "x" * 300},
        {"item_id": "g", "occurred_at": 253402300800},  # year 10000: no datetime holds it
        {"item_id": "g", "occurred_at": "0001-01-01T00:00:00+01:00"},  # year 0 in UTC
        {"item_id": "g", "occurred_at": -1e300},
    ]
    fast, rejects = parse_updates(batch)
    assert_same((fast, rejects), parse_updates_by_row(batch))
    assert fast.item_ids == ["a", "d", "e", "f", "g", "g", "i", "a"]
    assert [i for i, _ in rejects] == [1, 2, 3, 4, 5, 10, 11, 13, 15, 17, 18, 19, 20]
    assert math.isnan(fast.price[0]) and fast.stock[1] == 7.0 and fast.min[3] == 1.0
    assert fast.groups[4] == "7" and fast.event_ids[4] == "12"


def test_int_columns_at_the_limits() -> None:
    """Columns of ints only (converted through int64 when they fit) at the magnitude and int64 limits."""
    stock = [5, 10**12, -(10**12), 10**12 + 1, 2**63 - 1, -(2**63), 7]
    wide = [*stock, 2**63, -(2**63) - 1, 10**400]
    for column in (stock, wide):
        batch = [{"item_id": f"s{i}", "stock_quantity": v, "price": 2} for i, v in enumerate(column)]
        fast, rejects = parse_updates(batch)
        assert_same((fast, rejects), parse_updates_by_row(batch))
        assert fast.stock.tolist() == [5.0, 1e12, -1e12, 7.0]
        assert [i for i, _ in rejects] == [3, 4, 5, *range(7, len(column))]


class Text(str):
    """A str subclass: the row parser returns its value as an exact str."""


def test_str_subclass_ids_are_parsed_row_by_row() -> None:
    clean = [{"item_id": "a", "stock_quantity": 1}, {"item_id": Text("b"), "stock_quantity": 2}]
    mixed = [*clean, {"item_id": Text(" c "), "event_id": Text("e"), "category": Text("g")}]
    for batch, ids in ((clean, ["a", "b"]), (mixed, ["a", "b", "c"])):
        fast, rejects = parse_updates(batch)
        assert_same((fast, rejects), parse_updates_by_row(batch))
        assert fast.item_ids == ids and not rejects
        assert all(type(v) is str for v in (*fast.item_ids, *fast.event_ids[2:], *fast.groups[2:]))


def test_decoded_json_and_non_list_inputs() -> None:
    docs = [
        orjson.loads(orjson.dumps({"item_id": f"s{i}", "stock_quantity": i, "price": 1.5})) for i in range(50)
    ]
    assert_same(parse_updates(docs), parse_updates_by_row(docs))
    assert_same(parse_updates(iter(docs)), parse_updates_by_row(docs))
    assert_same(parse_updates([]), parse_updates_by_row([]))
    assert len(parse_updates([])[0]) == 0


def test_an_empty_group_field_groups_nobody_on_both_paths() -> None:
    """``group_field=""`` (peer_group_field none): no row has a group, even one sending a "" key."""
    batch = [{"item_id": "a", "stock_quantity": 5, "": "g", "category": "c"},
             {"item_id": "b", "price": True, "": "g"}, {"item_id": "c", "price": 2.0}]  # fmt: skip
    fast, rows = parse_updates(batch, group_field=""), parse_updates_by_row(batch, group_field="")
    assert_same(fast, rows)
    assert fast[0].groups == [None, None] and [i for i, _ in fast[1]] == [1]
    assert parse_updates(batch)[0].groups == ["c", None]  # category, the default, still groups
