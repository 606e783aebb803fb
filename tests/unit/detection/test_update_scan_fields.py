"""The record scanner under every peer-group field a detector can be configured with.

``test_update_scan.py`` holds the scanner to ``parse_updates`` with the group field ``category``
only. The group field is part of the scanner's key table, so each configuration is a different
scanner: no group (``""``, which a record's own ``""`` key must not stand in for), a key the id
parser also reads (``sku``, ``_id``), a key of the update itself, keys with spaces, punctuation or
DEL, and keys a plain record cannot name (non-ASCII, a quote, a backslash, a control byte). For
each, an answer must be the dict path's, and a batch of plain records must still be answered when
the key is one a plain record can name.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detection.scan_kernel import FIELD_KEYS
from detection.update_scan import scan_updates
from tests.unit.detection.test_update_scan import _assert_equal, decimal, plain_id, plain_text, reference

PLAIN_GROUPS = ["", "category", "sku", "_id", "Category", "cat egory", "a:b", "{", "x\x7f", "g"]
ODD_GROUPS = ["\u00e9tag\u00e8re", 'q"t', "b\\s", "\t", "price", "min_stock", "item_id", "event_id",
              "occurred_at", "<group>"]  # fmt: skip
KEYS = ["item_id", "sku", "_id", "event_id", "occurred_at", "price", "", *PLAIN_GROUPS[1:], *ODD_GROUPS[:4]]
text_value = st.one_of(plain_text.map(json.dumps), st.just("null"))
any_value = st.one_of(text_value, decimal, st.sampled_from(["true", "false", "7", "-0", "1e2", "{}"]))


@st.composite
def record(draw: st.DrawFn, group: str, *, plain: bool) -> bytes:
    """A flat record naming ``group`` now and then; ``plain``: only values the scanner takes."""
    fields = {"item_id": json.dumps(draw(plain_id))}
    names = (
        [group, *KEYS] if not plain else [k for k in [group, *KEYS] if k.isascii() and _key(k) == f'"{k}"']
    )
    keys = draw(st.lists(st.sampled_from(names), max_size=5, unique=True))
    for key in keys:
        if key == "item_id":
            continue
        if plain:
            if key in ("event_id", "sku", "_id", "", group) or key not in FIELD_KEYS:
                fields[key] = draw(text_value)
            elif key == "price":
                fields[key] = draw(st.sampled_from(["2.5", "0", "-0.0", "12"]))
            elif key == "occurred_at":
                fields[key] = draw(st.sampled_from(["null", "1700000000", "1700000000.5"]))
        else:
            fields[key] = draw(any_value)
    order = draw(st.permutations(list(fields)))
    return ("{" + ", ".join(f"{_key(k)}: {fields[k]}" for k in order) + "}").encode()


def _key(key: str) -> str:
    """A key as a producer writes it: raw where JSON allows it (DEL, non-ASCII), else escaped."""
    raw = all(c >= " " and c not in '"\\' for c in key)
    return f'"{key}"' if raw else json.dumps(key, ensure_ascii=False)


@settings(max_examples=500, deadline=None)
@given(st.data(), st.sampled_from(PLAIN_GROUPS + ODD_GROUPS))
def test_an_answer_is_the_dict_paths_answer_whatever_the_group_field(data: st.DataObject, group: str) -> None:
    values = data.draw(st.lists(record(group, plain=data.draw(st.booleans())), min_size=1, max_size=5))
    got = scan_updates(values, group)
    if got is None:
        return
    want = reference(values, group)
    assert want is not None, (values, group)
    _assert_equal(got, want)


@settings(max_examples=300, deadline=None)
@given(st.data(), st.sampled_from(PLAIN_GROUPS))
def test_plain_records_are_scanned_whatever_plain_group_field(data: st.DataObject, group: str) -> None:
    values = data.draw(st.lists(record(group, plain=True), min_size=1, max_size=5))
    want = reference(values, group)
    assert want is not None, values
    got = scan_updates(values, group)
    assert got is not None, (values, group)
    _assert_equal(got, want)


@pytest.mark.parametrize("group", ODD_GROUPS)
def test_a_group_field_no_plain_record_names_leaves_every_batch_to_the_dict_path(group: str) -> None:
    assert scan_updates([b'{"item_id": "a", "price": 2.5}'], group) is None


def test_no_group_field_is_not_the_empty_key() -> None:
    """``""`` means no peer grouping: a record's own ``""`` key is an attribute, never its group."""
    got = scan_updates([b'{"item_id": "a", "": "tv"}', b'{"item_id": "b", "": null}'], "")
    assert got is not None
    assert got.groups == [None, None]
