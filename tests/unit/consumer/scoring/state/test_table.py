"""PartitionTable: a numpy hash index that behaves like a dict of id -> (record, offset)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.scoring.state.table import ABSENT, PartitionTable
from detection.item_state import STATE_DTYPE


def records(values: list[float]) -> np.ndarray:
    out = np.zeros(len(values), STATE_DTYPE)
    out["stock"] = values
    return out


def test_unknown_ids_are_minus_one_and_put_returns_what_it_replaced() -> None:
    table = PartitionTable(capacity=4)
    assert table.lookup(["a", "b"]).tolist() == [-1, -1]
    before, offsets = table.put(["a", "b"], records([1.0, 2.0]), [10, 11])
    assert offsets.tolist() == [ABSENT, ABSENT]
    before, offsets = table.put(["b"], records([3.0]), [12])
    assert before["stock"].tolist() == [2.0] and offsets.tolist() == [11]
    got, off = table.get(table.lookup(["b", "a"]))
    assert got["stock"].tolist() == [3.0, 1.0] and off.tolist() == [12, 10]
    assert len(table) == 2


def test_writing_back_what_put_returned_undoes_it_even_an_insert() -> None:
    table = PartitionTable()
    table.put(["a"], records([1.0]), [5])
    undo = table.put(["a", "new"], records([7.0, 8.0]), [6, 6])
    table.put(["a", "new"], *undo)
    assert table.lookup(["new"]).tolist() == [-1]
    assert len(table) == 1
    got, off = table.get(table.lookup(["a"]))
    assert got["stock"].tolist() == [1.0] and off.tolist() == [5]
    table.put(["new"], records([9.0]), [7])  # comes back in the same row
    assert table.get(table.lookup(["new"]))[0]["stock"].tolist() == [9.0]


def test_growth_keeps_every_item_and_memory_stays_near_150_bytes_per_item() -> None:
    table = PartitionTable(capacity=16)
    n = 50_000
    ids = [f"SKU-{i}" for i in range(n)]
    for start in range(0, n, 997):  # many small inserts: growth and re-indexing
        chunk = ids[start : start + 997]
        table.put(chunk, records([float(start)] * len(chunk)), np.arange(start, start + len(chunk)))
    rows = table.lookup(ids)
    assert (rows >= 0).all()
    assert table.get(rows)[1].tolist() == list(range(n))
    loaded = PartitionTable(capacity=n)
    loaded.load(ids, records([0.0] * n), np.arange(n))
    assert loaded.nbytes / n < 160  # 112-byte records (detector + episode), hashes, offset, slots, ids
    assert loaded.row_ids(0, 3)[0].tolist() == [b"SKU-0", b"SKU-1", b"SKU-2"]
    assert table.row_ids(n - 2, n)[0].tolist() == [b"SKU-49998", b"SKU-49999"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.text(min_size=1, max_size=6), max_size=12, unique=True), st.integers(0, 99)),
        max_size=25,
    )
)
def test_behaves_like_a_dict(ops: list[tuple[list[str], int]]) -> None:
    table = PartitionTable(capacity=1)
    model: dict[str, tuple[float, int]] = {}
    for ids, value in ops:
        table.put(ids, records([float(value)] * len(ids)), [value] * len(ids))
        model.update(dict.fromkeys(ids, (float(value), value)))
    keys = [*model, "never-seen"]
    rows = table.lookup(keys)
    assert rows[-1] == -1
    got, off = table.get(rows[:-1])
    assert list(zip(got["stock"].tolist(), off.tolist(), strict=True)) == list(model.values())
    assert len(table) == len(model)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from("abcdefgh"), max_size=8),  # looked up first (the batch's prior)
            st.lists(st.sampled_from("abcdefghij"), max_size=6, unique=True),  # then written
            st.booleans(),  # the write undoes: offsets ABSENT (a rolled-back insert)
        ),
        max_size=20,
    )
)
def test_a_put_after_a_lookup_writes_the_rows_of_its_own_ids(
    ops: list[tuple[list[str], list[str], bool]],
) -> None:
    table = PartitionTable(capacity=1)
    model: dict[str, tuple[float, int]] = {}
    for step, (looked, ids, undo) in enumerate(ops):
        rows = table.lookup(looked)
        assert [r >= 0 for r in rows.tolist()] == [i in model for i in looked]
        offset = ABSENT if undo else step
        table.put(ids, records([float(step)] * len(ids)), [offset] * len(ids))
        for i in ids:
            if undo:
                model.pop(i, None)
            else:
                model[i] = (float(step), step)
    rows = table.lookup([*model])
    got, off = table.get(rows)
    assert list(zip(got["stock"].tolist(), off.tolist(), strict=True)) == list(model.values())
    assert len(table) == len(model)


def test_compact_drops_spare_capacity_and_keeps_every_item() -> None:
    table = PartitionTable(capacity=16)
    ids = [f"i{k}" for k in range(5000)]
    for start in range(0, 5000, 100):
        table.put(ids[start : start + 100], records([1.0] * 100), [start] * 100)
    before = table.nbytes
    table.compact()
    assert table.nbytes < before
    assert (table.lookup(ids) >= 0).all() and len(table) == 5000
    table.put(["new"], records([2.0]), [1])  # still grows after a compaction
    assert table.get(table.lookup(["new"]))[0]["stock"].tolist() == [2.0]


def test_an_empty_compacted_table_holds_no_id() -> None:
    """An inventory seed of no documents is a table compacted to zero rows: lookups find nothing."""
    table = PartitionTable(capacity=0)
    table.load([], records([]), np.zeros(0))
    table.compact()
    assert table.lookup(["a", "b", "a"]).tolist() == [-1, -1, -1]
    found, offsets = table.gather(table.find(["a"]))
    assert offsets.tolist() == [ABSENT]
    assert found["stock"].tolist() == [0.0]


def test_an_empty_inventory_seeds_nothing_and_does_not_fail() -> None:
    from consumer.scoring.state.seeds import SnapshotSeeds

    seeds = SnapshotSeeds([])  # the inventory was empty (or unreadable) when the seed was loaded
    assert len(seeds) == 0
    assert seeds.seed(["sku-1", "sku-2", "sku-1"]).item_ids == []
