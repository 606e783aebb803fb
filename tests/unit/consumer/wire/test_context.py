"""What travels with an anomaly event: bounded attributes, propagated headers, model links."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import bson
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import Settings
from consumer.wire.context import (
    MANIFEST_FILE,
    MAX_ATTRIBUTE_DEPTH,
    RECHECK_S,
    REPORT_FILE,
    SEED_INPUT_KEYS,
    EventContext,
    ModelLinks,
    change_input_keys,
    item_attributes,
    propagated_headers,
)
from consumer.wire.dlq import DLQ_PREFIX
from detection import ItemValidationError, parse_item, parse_updates, store

VERSION = "20261201T000000Z-1a2b3c4d"
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
hostile_keys = st.sampled_from(["$where", "a.b", "nul\x00", ""]) | st.text(max_size=8)
hostile_values = st.recursive(
    json_values | st.integers(2**63 - 2, 2**64 - 1),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_keys, inner, max_size=3),
    max_leaves=8,
)
objects = st.dictionaries(
    st.sampled_from([*SEED_INPUT_KEYS, "occurred_at", "category"]) | hostile_keys,
    hostile_values,
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(objects, st.integers(0, 8), st.integers(2, 300))
def test_attributes_stay_within_both_bounds_and_say_when_something_was_left_out(
    obj: dict[str, Any], max_fields: int, max_bytes: int
) -> None:
    extra = {k: v for k, v in obj.items() if k not in SEED_INPUT_KEYS}
    kept, cut = item_attributes(obj, SEED_INPUT_KEYS, max_fields=max_fields, max_bytes=max_bytes)
    assert len(kept) <= max_fields and len(orjson.dumps(kept)) <= max_bytes
    assert all(extra[k] is v for k, v in kept.items())
    assert list(kept) == [k for k in extra if k in kept]  # input order
    assert cut == (kept != extra)
    bson.encode({"attributes": kept}, check_keys=True)  # what the Mongo audit writes: never refused


def test_a_field_nested_deeper_than_orjson_writes_is_left_out_not_a_crash() -> None:
    # orjson reads 1024 levels, writes 255
    obj = orjson.loads(
        orjson.dumps({"item_id": "A", "w": "WH-7"})[:-1] + b',"deep":' + b"[" * 300 + b"]" * 300 + b"}"
    )
    assert len(obj) == 3
    kept, cut = item_attributes(obj, SEED_INPUT_KEYS, max_fields=32, max_bytes=4096)
    assert (kept, cut) == ({"w": "WH-7"}, True)


@pytest.mark.parametrize("levels", [MAX_ATTRIBUTE_DEPTH, 252, 254])
def test_a_field_the_event_could_not_carry_that_deep_is_left_out(levels: int) -> None:
    deep = orjson.loads(b'{"a":' * levels + b"1" + b"}" * levels)  # orjson writes it alone, not in an event
    kept, cut = item_attributes({"deep": deep, "w": 1}, SEED_INPUT_KEYS, max_fields=32, max_bytes=1 << 20)
    assert (kept, cut) == ({"w": 1}, True)
    orjson.dumps({"anomaly": {"item": {"attributes": kept}}})
    shallow = orjson.loads(b'{"a":' * (MAX_ATTRIBUTE_DEPTH - 1) + b"1" + b"}" * (MAX_ATTRIBUTE_DEPTH - 1))
    assert item_attributes({"s": shallow}, SEED_INPUT_KEYS, max_fields=32, max_bytes=1 << 20) == (
        {"s": shallow},
        False,
    )


def test_an_array_in_an_array_is_left_out_ferretdb_refuses_it() -> None:
    kept, cut = item_attributes(
        {"x": [[]], "y": [{"z": [1]}]}, SEED_INPUT_KEYS, max_fields=32, max_bytes=4096
    )
    assert (kept, cut) == ({"y": [{"z": [1]}]}, True)


def test_keys_and_numbers_no_document_store_holds_are_left_out_at_any_depth() -> None:
    obj = {"ok": {"x": [1, {"y": 2}]}, "$set": 1, "a.b": 2, "n": {"in\x00side": 1}, "big": 2**64 - 1,
           "deep": [{"k": {"$gt": 0}}], "fine": -(2**63)}  # fmt: skip
    kept, cut = item_attributes(obj, SEED_INPUT_KEYS, max_fields=32, max_bytes=4096)
    assert (kept, cut) == ({"ok": {"x": [1, {"y": 2}]}, "fine": -(2**63)}, True)


def test_a_huge_field_is_left_out_without_hiding_the_small_ones_after_it() -> None:
    obj = {"item_id": "A", "price": 1, "blob": "x" * 10_000, "warehouse_id": "WH-7", "supplier": "acme"}
    kept, cut = item_attributes(obj, SEED_INPUT_KEYS, max_fields=32, max_bytes=100)
    assert (kept, cut) == ({"warehouse_id": "WH-7", "supplier": "acme"}, True)
    kept, cut = item_attributes(obj, SEED_INPUT_KEYS, max_fields=1, max_bytes=100_000)
    assert (list(kept), cut) == (["blob"], True)
    assert item_attributes({"item_id": "A"}, SEED_INPUT_KEYS, max_fields=0, max_bytes=2) == ({}, False)


def test_no_attribute_field_at_all_when_max_fields_is_zero() -> None:
    ctx = EventContext(max_fields=0)
    assert ctx.attributes({"item_id": "A", "w": 1}, SEED_INPUT_KEYS) == {
        "attributes": {},
        "attributes_truncated": True,
    }
    assert ctx.attributes({"item_id": "A"}, SEED_INPUT_KEYS)["attributes_truncated"] is False


@settings(max_examples=300, deadline=None)
@given(objects)
def test_the_seed_parser_reads_nothing_but_its_input_keys(obj: dict[str, Any]) -> None:
    """Dropping the attributes never changes what parse_item makes of an object."""
    used = {k: v for k, v in obj.items() if k in SEED_INPUT_KEYS}
    try:
        want: Any = parse_item(obj)
    except ItemValidationError as exc:
        want = exc.reason
    try:
        got: Any = parse_item(used)
    except ItemValidationError as exc:
        got = exc.reason
    assert got == want


def test_every_input_key_is_read_by_its_parser() -> None:
    """No key in the sets is an attribute in disguise: changing it changes the parse."""
    base = {"item_id": "A", "event_id": "e1", "stock_quantity": 5, "min_stock_level": 1, "max_stock_level": 9}
    base |= {"price": 2.0, "occurred_at": 100.0, "grp": "tv"}
    for key in SEED_INPUT_KEYS - {"item_id", "sku", "_id"}:
        changed = {k: v for k, v in base.items() if k != key} | {key: 7 if key != "event_id" else "e2"}
        assert parse_item(changed) != parse_item(base) or key in ("min_stock", "max_stock"), key
    for alias, field in (("min_stock", "min_stock_level"), ("max_stock", "max_stock_level")):
        assert parse_item({"item_id": "A", alias: 3}).model_dump()[field] == 3
    for key in ("sku", "_id"):
        assert parse_item({key: "B"}).item_id == "B"
    assert change_input_keys("grp") == SEED_INPUT_KEYS | {"occurred_at", "grp"}
    one = parse_updates([base], group_field="grp")[0]
    assert (one.groups, list(one.occurred_at)) == (["tv"], [100.0])
    cleaned = {k: v for k, v in base.items() if k in change_input_keys("grp")} | {"note": 1}
    again = parse_updates([cleaned], group_field="grp")[0]
    assert (again.groups, again.event_ids, math.isclose(again.price[0], 2.0)) == (["tv"], ["e1"], True)
    # no peer grouping (group field ""): a field named "" is not read, so it stays an attribute
    assert change_input_keys("") == SEED_INPUT_KEYS | {"occurred_at"}


def test_headers_named_are_copied_last_one_wins_case_insensitively_and_big_ones_are_dropped() -> None:
    names = ("traceparent", "trace-id", "correlation-id")
    tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = [("Trace-Id", b"old"), ("x-secret", b"s"), ("traceparent", tp), ("trace-id", b"new")]
    assert propagated_headers(headers, names, max_bytes=64) == [("traceparent", tp), ("trace-id", b"new")]
    assert propagated_headers(headers, names, max_bytes=8) == [("trace-id", b"new")]
    assert propagated_headers([("trace-id", b"a"), ("trace-id", b"x" * 9)], names, max_bytes=8) == []
    assert propagated_headers([("correlation-id", None)], names, max_bytes=8) == []
    assert propagated_headers(headers, (), max_bytes=64) == []
    assert propagated_headers(None, names, max_bytes=64) == []


def test_the_setting_is_a_comma_list_and_empty_means_none() -> None:
    assert Settings().context.header_names == ("traceparent", "trace-id", "correlation-id")
    assert Settings(propagate_headers=" X-Req , traceparent,x-req,").context.header_names == (
        "x-req",
        "traceparent",
    )
    ctx = EventContext.from_settings(Settings(propagate_headers="").context, None)
    assert ctx.headers([("traceparent", b"1")]) == []


def test_links_name_the_version_directory_and_its_report_once_it_exists(tmp_path: Path) -> None:
    now = [0.0]
    links = ModelLinks(tmp_path, clock=lambda: now[0])
    assert links(VERSION) == {"model": None, "report": None}  # not published here (a model built in process)
    (tmp_path / VERSION).mkdir()
    (tmp_path / VERSION / MANIFEST_FILE).write_text("{}")
    now[0] += RECHECK_S
    directory = (tmp_path / VERSION).resolve()
    assert links(VERSION) == {"model": directory.as_uri() + "/", "report": None}
    (tmp_path / VERSION / REPORT_FILE).write_bytes(b"png")
    assert links(VERSION)["report"] is None  # looked for again only after RECHECK_S
    now[0] += RECHECK_S
    assert links(VERSION)["report"] == (directory / REPORT_FILE).as_uri()
    templated = ModelLinks(tmp_path, "https://reports.example/models/{version}/report.png")
    assert MANIFEST_FILE == store.MANIFEST_FILE
    assert templated(VERSION)["report"] == f"https://reports.example/models/{VERSION}/report.png"
    assert ModelLinks(tmp_path)("unversioned") == {"model": None, "report": None}
    assert ModelLinks(None)(VERSION) == {"model": None, "report": None}


def test_stockwatchs_own_headers_are_never_propagated() -> None:
    with pytest.raises(ValueError, match=r"dlq\.source\.offset: dlq\.\* headers are StockWatch's own"):
        Settings(propagate_headers="traceparent,DLQ.source.offset")
    assert DLQ_PREFIX == "dlq."  # config/context.py's copy of it


def test_the_report_linked_is_the_one_the_retrain_worker_writes() -> None:
    from consumer.retraining.report import REPORT_FILE as WRITTEN

    assert REPORT_FILE == WRITTEN


def test_a_report_template_must_name_the_version() -> None:
    with pytest.raises(ValueError, match="version"):
        Settings(report_url_template="https://reports.example/latest.png")


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*sorted(SEED_INPUT_KEYS), "warehouse", "note", "occurred_at"]),
        st.one_of(st.integers(-5, 5), st.text(max_size=8), st.none()),
        max_size=8,
    ),
    st.sampled_from([0, 1, 32]),
)
def test_attributes_of_an_input_with_only_read_keys_are_those_of_the_general_path(
    obj: dict[str, Any], max_fields: int
) -> None:
    """The shortcut for inputs holding only what the detector reads says what the bounds say."""
    context = EventContext(max_fields=max_fields, max_bytes=64)
    used = change_input_keys("")
    if max_fields:
        kept, cut = item_attributes(obj, used, max_fields=max_fields, max_bytes=64)
    else:
        kept, cut = {}, any(k not in used for k in obj)
    assert context.attributes(obj, used) == {"attributes": kept, "attributes_truncated": cut}
