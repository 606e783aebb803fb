"""decode_updates reads any value orjson reads as decode_records does, whatever its Python type.

The scan joins the values into one buffer and bounds each record by ``len(value)``; orjson takes
``bytes``, ``bytearray``, ``memoryview`` and ``str`` alike. A value the join cannot take (a ``str``)
must send the batch to the dict path, not raise; a value whose ``len`` is not its size in bytes
(a memoryview of 2-byte items: ``len`` counts items) must too, else the scan reads only the first
half of its bytes: a record orjson refuses (trailing bytes) became an update, and building its
anomaly event then raised orjson's error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from consumer.scoring.batch import BatchConfig, decode_records
from consumer.scoring.update_decode import decode_updates
from detection import parse_updates
from tests.fakes import Rec

CONFIG = BatchConfig("anomalies", "dlq")
PLAIN = b'{"item_id": "a", "price": 2.5, "category": "tv", "colour": "red"} '  # of even length
WIDE = b'{"item_id":"b","price":1.50}' + b"x" * 28  # its first half is a plain object, the whole is not JSON


def _wide(raw: bytes) -> memoryview:
    return memoryview(raw).cast("H")


KINDS: dict[str, Callable[[bytes], Any]] = {
    "bytes": bytes,
    "bytearray": bytearray,
    "memoryview": memoryview,
    "str": bytes.decode,
    "memoryview of 2-byte items": _wide,
}


def _check(values: list[Any]) -> None:
    records = [Rec("in", 0, k, 1_000 + k, None, v, []) for k, v in enumerate(values)]
    objs, candidates, failures, updates, rejects = decode_updates(records, CONFIG, "category")
    want_objs, want_candidates, want_failures = decode_records(records, CONFIG)
    want, want_rejects = parse_updates(want_objs, group_field="category")
    assert list(objs) == want_objs  # every object decodes (an event may ask for any of them)
    assert list(candidates) == list(want_candidates)
    assert failures == want_failures
    assert rejects == want_rejects
    assert (updates.item_ids, updates.groups, updates.event_ids) == (
        want.item_ids,
        want.groups,
        want.event_ids,
    )
    assert np.array_equal(updates.price, want.price, equal_nan=True)


@pytest.mark.parametrize("kind", KINDS)
def test_a_value_of_any_type_orjson_reads_gives_the_dict_paths_updates(kind: str) -> None:
    make = KINDS[kind]
    _check([make(PLAIN)])
    _check([PLAIN, make(PLAIN)])


def test_a_wide_memoryview_is_bounded_by_its_bytes_not_its_items() -> None:
    value = _wide(WIDE)
    assert len(value) * 2 == len(WIDE)
    _check([value])  # the dict path: one invalid_json dead letter, no update
    _check([PLAIN, value])
