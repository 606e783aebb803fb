"""The changelog cache against a per-item reference over random sequences of adds (rows known or not,
of one table or of a partition's next table, items changed once or several times), failed flushes
given back, revocations and MERGE_AFTER merges: each flush writes each item's last change, where
the item first came, byte for byte (the shortcut of chunks whose items all differ included)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.scoring.state.cache import MERGE_AFTER, ChangelogCache
from consumer.scoring.state.id_blob import EncodedIds
from consumer.scoring.state.record import ITEM_DTYPE
from consumer.scoring.state.store import StagedChanges
from consumer.scoring.state.table import PartitionTable
from tests.unit.consumer.scoring.state.test_flush_parity import ref_packs

TOPIC = "g.in.state"
UNIVERSE = [f"{p}{k}" for k in range(60) for p in ("sku-", "é-")]

ADD = st.tuples(
    st.just("add"),
    st.integers(0, 2),  # partition
    st.one_of(  # its ids, distinct: a few among many (items changed once) or among a popular few
        st.lists(st.sampled_from(UNIVERSE), max_size=12, unique=True),
        st.lists(st.sampled_from(UNIVERSE[:6]), max_size=6, unique=True),
    ),
    st.sampled_from(["rows", "rows", "none", "other"]),  # rows known, unknown, of a stale table
)
OPS = st.lists(
    st.one_of(
        ADD,
        ADD,
        ADD,
        st.tuples(st.just("flush"), st.booleans()),  # acknowledged or given back
        st.tuples(
            st.just("late"), st.integers(0, 2), st.lists(st.sampled_from(UNIVERSE), max_size=8, unique=True)
        ),
        st.tuples(st.just("revoke"), st.integers(0, 2)),
        st.tuples(st.just("reassign"), st.integers(0, 2)),  # the partition's next table (no drop)
        st.tuples(st.just("burst"), st.integers(0, 2)),  # MERGE_AFTER + 1 chunks of distinct items
    ),
    max_size=40,
)


class Model:
    def __init__(self) -> None:
        self.cache = ChangelogCache(TOPIC)
        self.tables = {p: PartitionTable(capacity=16) for p in range(3)}
        self.held: dict[int, list[tuple[list[str], list[bytes], list[int]]]] = {}
        self.offset = 0
        self.stock = 0.0

    def add(self, p: int, ids: list[str], rows: str) -> None:
        records = np.zeros(len(ids), ITEM_DTYPE)
        records["stock"] = np.arange(self.stock, self.stock + len(ids))
        self.stock += len(ids)
        offsets = np.arange(self.offset, self.offset + len(ids), dtype=np.int64)
        self.offset += len(ids)
        known: dict[int, Any] = {}
        if rows != "none" and ids:
            table = self.tables[p] if rows == "rows" else PartitionTable(capacity=16)
            _, at = table.put_rows(ids, records, offsets)
            known[p] = (table, at)
        self.cache.add(StagedChanges({p: (ids, records, offsets)}, rows=known))
        if ids:
            held = self.held.setdefault(p, [])
            held.append((list(ids), [r.tobytes() for r in records], offsets.tolist()))
            if len(held) > MERGE_AFTER:
                self.held[p] = [_merged(held)]

    def flush(self, acked: bool, *, meanwhile: tuple[int, list[str]] | None = None) -> None:
        """A flush; ``meanwhile``: a batch acknowledged while it was in flight (newer: it wins)."""
        want = {p: _merged(chunks) for p, chunks in self.held.items() if chunks}
        taken = self.cache.take()
        assert sorted(taken.chunks) == sorted(want)
        values = []
        for p in sorted(want):
            ids, records, offsets = want[p]
            got_ids, got_records, got_offsets = taken.chunks[p]
            assert list(got_ids) == ids
            if isinstance(got_ids, EncodedIds):  # the UTF-8 taken from the table: the ids' own
                assert got_ids.blob.tolist() == [i.encode() for i in ids]
            assert [r.tobytes() for r in got_records] == records and got_offsets.tolist() == offsets
            changes = [r + struct.pack("<q", o) for r, o in zip(records, offsets, strict=True)]
            values += ref_packs([i.encode() for i in ids], changes)
        assert [r.value for r in taken.records] == values
        assert taken.items == sum(len(w[0]) for w in want.values())
        assert taken.changes == sum(len(c[0]) for cs in self.held.values() for c in cs)
        self.held = {}
        if meanwhile is not None:
            self.add(*meanwhile, "rows")
        if not acked:
            self.cache.give_back(taken)
            for p, w in want.items():
                self.held.setdefault(p, []).insert(0, w)


def _merged(
    chunks: list[tuple[list[str], list[bytes], list[int]]],
) -> tuple[list[str], list[bytes], list[int]]:
    """Each item's last change, where the item first came."""
    last: dict[str, tuple[bytes, int]] = {}
    for ids, records, offsets in chunks:
        for i, r, o in zip(ids, records, offsets, strict=True):
            last[i] = (r, o)
    return list(last), [r for r, _ in last.values()], [o for _, o in last.values()]


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_every_flush_writes_each_items_last_change_as_the_reference(ops: list[tuple[Any, ...]]) -> None:
    m = Model()
    for op in ops:
        kind = op[0]
        if kind == "add":
            m.add(op[1], list(op[2]), op[3])
        elif kind == "flush":
            m.flush(op[1])
        elif kind == "late":  # a flush given back after a batch acknowledged meanwhile
            m.flush(False, meanwhile=(op[1], list(op[2])))
        elif kind == "revoke":
            m.cache.drop([op[1]])
            m.held.pop(op[1], None)
            m.tables[op[1]] = PartitionTable(capacity=16)
        elif kind == "reassign":
            m.tables[op[1]] = PartitionTable(capacity=16)
        else:
            for k in range(MERGE_AFTER + 1):
                m.add(op[1], [f"burst-{m.offset}-{k}"], "rows")
        assert len(m.cache) == sum(len(c[0]) for cs in m.held.values() for c in cs)
    m.flush(True)
    assert not len(m.cache)
