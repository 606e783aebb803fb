"""Packed changelog records (consumer/scoring/state/packed.py): round trip, order, size cap, and
records that do not parse refused without a crash."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.ports import OutputRecord
from consumer.scoring.state.changelog import (
    CHANGELOG_VALUE,
    RESET_KEY,
    changelog_records,
    changelog_values,
    decode,
    item_records,
    reset_record,
)
from consumer.scoring.state.packed import MAX_PACK_BYTES, PACK_PREFIX, is_pack, pack, unpack
from detection.item_state import STATE_DTYPE

WIDTH = CHANGELOG_VALUE.itemsize


def recs(*stock: float) -> np.ndarray:
    out = np.zeros(len(stock), STATE_DTYPE)
    out["stock"] = stock
    return out


def restored(log: list, committed: int = 2**62) -> dict[str, tuple[float, int]]:
    got = decode([o.key for o in log], [o.value for o in log], committed=committed)
    return {
        i: (s, o)
        for i, s, o in zip(got.item_ids, got.records["stock"].tolist(), got.offsets.tolist(), strict=True)
    }


def test_round_trip_keeps_ids_states_offsets_and_order() -> None:
    ids = ["a", "sku-é", "日本-1", "b"]
    out = changelog_records("cl", 2, ids, recs(1.0, 2.0, 3.0, 4.0), [5, 6, 7, 8])
    assert len(out) == 1 and is_pack(out[0].key) and out[0].partition == 2
    got = decode([out[0].key], [out[0].value], committed=100)
    assert got.item_ids == ids and got.records["stock"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert got.offsets.tolist() == [5, 6, 7, 8] and (got.read, got.ignored, got.refused) == (1, 0, 0)


def test_keys_are_unique_so_compaction_never_removes_a_packed_record() -> None:
    keys = {o.key for _ in range(50) for o in changelog_records("cl", 0, ["a"], recs(1.0), [1])}
    assert len(keys) == 50 and all(k.startswith(PACK_PREFIX) for k in keys)


def test_records_are_capped_and_split_in_order() -> None:
    n = 3 * MAX_PACK_BYTES // (WIDTH + 4 + 8)
    ids = [f"item-{k:03d}" for k in range(n)]
    out = changelog_records("cl", 0, ids, recs(*range(n)), np.arange(n))
    assert len(out) >= 3 and all(len(o.value or b"") <= MAX_PACK_BYTES for o in out)
    got = decode([o.key for o in out], [o.value for o in out], committed=n + 1)
    assert got.item_ids == ids and got.offsets.tolist() == list(range(n))


def test_a_later_state_wins_across_packed_and_per_item_records_by_log_position() -> None:
    log = item_records("cl", 0, ["a", "b"], recs(1.0, 2.0), [1, 2])  # a changelog written before packs
    log += changelog_records("cl", 0, ["a", "c"], recs(3.0, 4.0), [3, 4])
    log += item_records("cl", 0, ["c"], recs(5.0), [5])  # an older instance still writing per item
    log += changelog_records("cl", 0, ["b"], recs(6.0), [9])  # input 9 not committed: ignored
    from consumer.scoring.state.table import PartitionTable

    got = decode([o.key for o in log], [o.value for o in log], committed=8)
    table = PartitionTable()
    table.load(got.item_ids, got.records, got.offsets)
    rows = table.lookup(["a", "b", "c"])
    records, offsets = table.get(rows)
    assert records["stock"].tolist() == [3.0, 2.0, 5.0] and offsets.tolist() == [3, 2, 5]
    assert got.ignored == 1


def test_a_reset_mark_voids_packed_records_before_it() -> None:
    log = changelog_records("cl", 0, ["a", "b"], recs(1.0, 2.0), [1, 2])
    log += [reset_record("cl", 0)]
    log += changelog_records("cl", 0, ["c"], recs(3.0), [3])
    assert log[1].key == RESET_KEY
    assert restored(log) == {"c": (3.0, 3)}


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: v[:-1],  # truncated
        lambda v: v[:10],  # shorter than the header
        lambda v: b"XXXX" + v[4:],  # another magic
        lambda v: v[:4] + b"\x09" + v[5:],  # a future version
        lambda v: v + b"\x00",  # trailing bytes
        lambda v: v[:16] + b"\xff" * (len(v) - 16),  # lengths that do not add up
    ],
)
def test_a_damaged_packed_record_is_refused_and_the_rest_restores(damage: object) -> None:
    good = changelog_records("cl", 0, ["a"], recs(1.0), [1])
    bad = changelog_records("cl", 0, ["bb", "cc"], recs(2.0, 3.0), [2, 3])[0]
    log = [*good, OutputRecord("cl", bad.key, damage(bad.value), partition=0)]  # type: ignore[operator]
    log += changelog_records("cl", 0, ["d"], recs(4.0), [4])
    got = restored(log)
    assert got["a"] == (1.0, 1) and got["d"] == (4.0, 4) and "bb" not in got and "cc" not in got


def test_an_id_that_is_not_utf8_is_left_out_and_the_others_restore() -> None:
    bad = changelog_records("cl", 0, ["bb", "cc"], recs(2.0, 3.0), [2, 3])[0]
    forged = OutputRecord("cl", bad.key, (bad.value or b"")[:-2] + b"\xff\xfe", partition=0)
    got = decode([forged.key], [forged.value], committed=10)
    assert got.item_ids == ["bb"] and got.ignored == 1


def test_empty_and_null_packed_values_are_ignored() -> None:
    key = PACK_PREFIX + b"x"
    got = decode([key, key], [b"", None], committed=10)
    assert got.item_ids == [] and got.read == 2


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_no_bytes_crash_unpack_or_the_restore(blob: bytes) -> None:
    result = unpack(blob, WIDTH)
    assert result is None or len(result[0]) == result[1].shape[0]
    decode([PACK_PREFIX + b"1"], [blob], committed=10)  # never raises
    header = pack([b"a"], changelog_values(recs(1.0), [1]))[:16]
    decode([PACK_PREFIX + b"2"], [header + blob], committed=10)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=30, unique=True))
def test_any_ids_round_trip(ids: list[str]) -> None:
    safe = [i for i in ids if i.encode("utf-8", "surrogatepass") == i.encode("utf-8", "ignore")]
    if not safe:
        return
    out = changelog_records("cl", 0, safe, recs(*range(len(safe))), np.arange(len(safe)))
    assert decode([o.key for o in out], [o.value for o in out], committed=10**6).item_ids == safe
