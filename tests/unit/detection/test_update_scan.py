"""The record scanner answers only when it is right: its updates are orjson + parse_updates' ones.

Soundness on any bytes (valid or broken JSON, escapes, non-ASCII, nesting, exponents, duplicate
and alias keys, out-of-range values): when ``scan_updates`` answers, every value decodes to an
object and ``parse_updates`` gives the same columns, bit for bit, with no reject. Coverage on
plain records: it answers (else the fast path would never run).
"""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detection.scan_kernel import warm_up_scan
from detection.update_scan import scan_updates
from detection.updates import UpdateBatch, parse_updates

GROUP = "category"
KEYS = ["item_id", "event_id", "stock_quantity", "min_stock_level", "max_stock_level", "price", "occurred_at",
        GROUP, "min_stock", "max_stock", "colour", "", "item\\u005fid", "pr\u00efce"]  # fmt: skip
NUMBER_KEYS = ["stock_quantity", "min_stock_level", "max_stock_level", "price"]

plain_text = st.text(
    st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"\\'), max_size=12
)
plain_id = plain_text.filter(lambda s: s != "" and s == s.strip())
decimal = st.builds(
    lambda m, k, neg: (
        f"{'-' if neg else ''}{m // 10**k}.{m % 10**k:0{k}d}" if k else f"{'-' if neg else ''}{m}"
    ),
    st.integers(0, 10**15 - 1),
    st.integers(0, 6),
    st.booleans(),
).filter(lambda s: len(s.replace("-", "").replace(".", "").lstrip("0")) <= 15)
odd_number = st.sampled_from(["1e3", "1E-2", "-", "01", "1.", ".5", "-0", "-0.0", "0.0", "1e400", "12345678901234567890",
                              "0.1234567890123456", "1000000000000.5", "9007199254740993", "NaN", "Infinity"])  # fmt: skip
odd_text = st.sampled_from(['"a\\"b"', '"\\n"', '"\u00e9t\u00e9"', '" padded "', '""', '"\\u0041"', '"a\x01"',
                            '"' + "x" * 300 + '"'])  # fmt: skip
literal = st.sampled_from(["null", "true", "false", "{}", '{"a": 1}', "[1, 2]", "[]"])
float_repr = st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr)
any_value = st.one_of(decimal, odd_number, odd_text, literal, float_repr, plain_text.map(json.dumps))
space = st.sampled_from(["", " ", "\n", "\t ", "\r\n"])


@st.composite
def any_record(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(st.tuples(st.sampled_from(KEYS), any_value), max_size=9))
    if draw(st.booleans()):
        pairs.insert(draw(st.integers(0, len(pairs))), ("item_id", json.dumps(draw(plain_id))))
    gap = draw(space)
    body = f",{gap}".join(f'"{k}"{draw(space)}:{draw(space)}{v}' for k, v in pairs)
    text = f"{draw(space)}{{{gap}{body}{gap}}}{draw(space)}"
    broken = draw(st.sampled_from(["", "", "", "cut", "tail", "array", "number"]))
    if broken == "cut":
        text = text[: draw(st.integers(0, max(len(text) - 1, 0)))]
    elif broken == "tail":
        text += draw(st.sampled_from(["x", "}", ",", " {}"]))
    elif broken == "array":
        text = f"[{text}]"
    elif broken == "number":
        text = draw(decimal)
    return text.encode()


@st.composite
def plain_record(draw: st.DrawFn) -> bytes:
    fields: dict[str, str] = {"item_id": json.dumps(draw(plain_id))}  # each value as its JSON text
    for key in NUMBER_KEYS:
        if draw(st.booleans()):
            fields[key] = draw(decimal)
    if draw(st.booleans()):
        fields["occurred_at"] = draw(st.sampled_from(["null", "1700000000", "1700000000.125", "-5.5"]))
    for key in ("event_id", GROUP, "colour"):
        if draw(st.booleans()):
            fields[key] = draw(st.one_of(plain_text.map(json.dumps), st.just("null")))
    if draw(st.booleans()):
        fields["note"] = draw(st.sampled_from(["true", "false", "null", "12", "-3.25"]))
    order = draw(st.permutations(list(fields)))
    gap = draw(space)
    return ("{" + f",{gap}".join(f'"{k}":{draw(space)}{fields[k]}' for k in order) + "}").encode()


def _same(a: np.ndarray, b: np.ndarray) -> bool:  # type: ignore[type-arg]
    """Equal bit for bit (so -0.0 is not 0.0), NaN where both are NaN."""
    both_nan = np.isnan(a) & np.isnan(b)
    return bool(np.array_equal(a.view(np.int64)[~both_nan], b.view(np.int64)[~both_nan]))


def _assert_equal(got: UpdateBatch, want: UpdateBatch) -> None:
    assert got.item_ids == want.item_ids
    assert got.event_ids == want.event_ids
    assert got.groups == want.groups
    for name in ("stock", "min", "max", "price", "occurred_at"):
        assert _same(getattr(got, name), getattr(want, name)), name


def reference(values: list[bytes], group: str = GROUP) -> UpdateBatch | None:
    """What the dict path gives, or None when it decodes or parses any value differently."""
    try:
        objs = [orjson.loads(v) for v in values]
    except orjson.JSONDecodeError:
        return None
    if not all(type(o) is dict for o in objs):
        return None
    updates, rejects = parse_updates(objs, group_field=group)
    return None if rejects else updates


@settings(max_examples=600, deadline=None)
@given(st.lists(any_record(), min_size=1, max_size=6))
def test_an_answer_is_the_dict_paths_answer(values: list[bytes]) -> None:
    got = scan_updates(values, GROUP)
    if got is None:
        return
    want = reference(values)
    assert want is not None, values
    _assert_equal(got, want)


@settings(max_examples=300, deadline=None)
@given(st.lists(plain_record(), min_size=1, max_size=8))
def test_plain_records_are_scanned(values: list[bytes]) -> None:
    got = scan_updates(values, GROUP)
    want = reference(values)
    if want is None:  # a level beyond the magnitude limit, say: the row parser's case
        return
    assert got is not None, values
    _assert_equal(got, want)


@settings(max_examples=400, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12), st.integers(0, 15))
def test_a_decimal_is_the_double_orjson_reads(x: float, places: int) -> None:
    text = f"{x:.{places}f}"
    whole = text.lstrip("-").split(".")[0]
    if (0 if whole == "0" else len(whole)) + places > 15:
        return  # a number of more than 15 digits is orjson's
    value = f'{{"item_id": "a", "price": {text}}}'.encode()
    got = scan_updates([value], GROUP)
    assert got is not None, text
    assert got.price[0].hex() == float(orjson.loads(value)["price"]).hex()


@pytest.mark.parametrize(
    "record",
    [
        b'{"item_id": "a", "price": 1e3}',  # exponent
        b'{"item_id": "a", "price": 12345678901234567}',  # beyond 15 digits
        b'{"item_id": "a\\u0062"}',  # escape
        b'{"item_id": "\xc3\xa9"}',  # non-ASCII
        b'{"item_id": "a", "min_stock": 3}',  # an alias of a level
        b'{"item_id": "a", "item_id": "b"}',  # a key twice
        b'{"item_id": "a", "dims": {"w": 1}}',  # nested
        b'{"item_id": "a", "stock_quantity": null}',  # a level null
        b'{"item_id": "a", "stock_quantity": "5"}',  # a number as text
        b'{"item_id": 5}',  # an id as a number
        b'{"item_id": " a"}',  # padded id: parse_updates strips it
        b'{"item_id": "a", "price": 1e12}',
        b'{"item_id": "a", "price": 1000000000000.5}',  # beyond the magnitude limit
        b'{"item_id": "a", "occurred_at": "2026-12-05T01:00:00Z"}',  # a time as text
        b'{"price": 1}',  # no id
        b'{"item_id": "a"} x',  # trailing bytes
        b'{"item_id": "a",}',  # a trailing comma
        b"[]",
    ],
)
def test_what_the_scanner_leaves_to_the_dict_path(record: bytes) -> None:
    plain = b'{"item_id": "b", "price": 2.5}'
    assert scan_updates([plain], GROUP) is not None
    assert scan_updates([plain, record], GROUP) is None


def test_the_group_field_is_read_only_when_a_plain_key_names_it() -> None:
    value = b'{"item_id": "a", "category": "tools", "price": 2.5}'
    assert scan_updates([value], "category").groups == ["tools"]  # type: ignore[union-attr]
    assert scan_updates([value], "").groups == [None]  # type: ignore[union-attr]
    assert scan_updates([value], "price") is None  # a key with a meaning of its own: the dict path's
    assert scan_updates([value], 'quo"te') is None


def test_minus_zero_is_an_int_zero_but_a_float_minus_zero() -> None:
    got = scan_updates([b'{"item_id": "a", "stock_quantity": -0, "price": -0.0}'], GROUP)
    assert got is not None
    assert math.copysign(1.0, got.stock[0]) == 1.0
    assert math.copysign(1.0, got.price[0]) == -1.0


def test_warm_up_compiles_without_error() -> None:
    warm_up_scan()
