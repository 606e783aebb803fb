"""decode_updates gives what decode_records then parse_updates give, whichever path it takes."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.batch_path import Rec
from consumer.ports import UnreadBatch
from consumer.scoring.batch import BatchConfig, decode_records
from consumer.scoring.update_decode import LazyObjects, decode_updates
from detection import parse_updates
from tests.unit.detection.test_update_scan import GROUP, any_record, plain_record

CONFIG = BatchConfig("anomalies", "dlq", max_message_bytes=400)
UNREAD = UnreadBatch("in", 0, 9, 5, "decompression_bomb", "too big")


def _records(values: list[Any]) -> list[Any]:
    return [
        v if isinstance(v, UnreadBatch) else Rec("in", 0, k, 1_000 + k, None, v, [])
        for k, v in enumerate(values)
    ]


def _same_nan(a: np.ndarray, b: np.ndarray) -> bool:  # type: ignore[type-arg]
    return bool(np.array_equal(a, b, equal_nan=True))


record_value = st.one_of(any_record(), plain_record(), st.sampled_from([None, b"", b"x" * 401, UNREAD]))


@settings(max_examples=400, deadline=None)
@given(st.lists(record_value, min_size=1, max_size=6), st.booleans())
def test_either_path_gives_the_dict_paths_result(values: list[Any], plain: bool) -> None:
    if plain:  # a batch the scanner takes, most of the time
        values = [v for v in values if isinstance(v, bytes) and v.startswith(b"{")] or [b'{"item_id": "a"}']
    records = _records(values)
    objs, candidates, failures, updates, rejects = decode_updates(records, CONFIG, GROUP)
    want_objs, want_candidates, want_failures = decode_records(records, CONFIG)
    want, want_rejects = parse_updates(want_objs, group_field=GROUP)
    assert list(objs) == want_objs
    assert list(candidates) == list(want_candidates)
    assert failures == want_failures
    assert rejects == want_rejects
    assert updates.item_ids == want.item_ids
    assert updates.event_ids == want.event_ids
    assert updates.groups == want.groups
    for name in ("stock", "min", "max", "price", "occurred_at"):
        assert _same_nan(getattr(updates, name), getattr(want, name)), name


def test_a_plain_batch_is_scanned_and_its_objects_decoded_when_asked() -> None:
    values = [orjson.dumps({"item_id": f"i{k}", "price": 1.5 + k, "colour": "red"}) for k in range(3)]
    objs, _, _, updates, _ = decode_updates(_records(values), CONFIG, GROUP)
    assert isinstance(objs, LazyObjects)  # no dict built for the batch
    assert updates.price.tolist() == [1.5, 2.5, 3.5]
    assert objs[1] == {"item_id": "i1", "price": 2.5, "colour": "red"}
    assert objs[1] is objs[1]  # decoded once
    assert objs[-1]["item_id"] == "i2"
    assert objs[-1] is objs[2]
    assert [o["item_id"] for o in objs[:2]] == ["i0", "i1"]
    assert len(objs) == 3


def test_a_batch_with_one_odd_record_takes_the_dict_path() -> None:
    values = [b'{"item_id": "a"}', b'{"item_id": "b", "dims": {"w": 1}}']
    objs, _, _, updates, _ = decode_updates(_records(values), CONFIG, GROUP)
    assert not isinstance(objs, LazyObjects)
    assert updates.item_ids == ["a", "b"]


def test_a_batch_beyond_the_scan_bytes_is_decoded_one_by_one(monkeypatch: Any) -> None:
    import consumer.scoring.update_decode as module

    values = [b'{"item_id": "a", "price": 2.5}', b'{"item_id": "b"}']
    monkeypatch.setattr(module, "MAX_SCAN_BYTES", len(values[0]) + len(values[1]) - 1)
    objs, _, _, updates, _ = decode_updates(_records(values), CONFIG, GROUP)
    assert not isinstance(objs, LazyObjects)
    assert updates.item_ids == ["a", "b"]
    monkeypatch.setattr(module, "MAX_SCAN_BYTES", len(values[0]) + len(values[1]))
    assert isinstance(decode_updates(_records(values), CONFIG, GROUP)[0], LazyObjects)
