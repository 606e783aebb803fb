"""The at-least-once flush's vectorised parts (cache.py ``_latest``, writes.py, table.py ``row_ids``,
packed.py) against a plain per-item reference on random inputs: the same items in the same order,
byte for byte (only the random pack keys differ) — ids repeated across chunks, batches in flight
(their acknowledged states and their inserts), ABSENT rows, non-ASCII ids, several records per
partition."""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import consumer.scoring.state.packed as packed
from consumer.scoring.state.cache import ChangelogCache
from consumer.scoring.state.record import ITEM_DTYPE
from consumer.scoring.state.rolling import RollingRewrite
from consumer.scoring.state.store import StagedChanges
from consumer.scoring.state.table import ABSENT, PartitionTable
from consumer.scoring.state.writes import write_partition

TOPIC = "g.in.state"
P = 3  # the partition under test (another one's batches must not count)
Chunk = tuple[list[str], np.ndarray, np.ndarray]


def ref_latest(chunks: list[Chunk]) -> tuple[list[str], list[bytes], list[int]]:
    """Each item's last change, where the item first came (what the cache has always written)."""
    last: dict[str, tuple[bytes, int]] = {}
    for ids, records, offsets in chunks:
        for i, record, offset in zip(ids, records, offsets.tolist(), strict=True):
            last[i] = (record.tobytes(), offset)
    return list(last), [r for r, _ in last.values()], [o for _, o in last.values()]


def ref_slice(
    table: PartitionTable, ids_by_row: list[str], start: int, stop: int, undo: list[Any] | None
) -> tuple[list[bytes], list[bytes]]:
    """The rows start:stop that hold an item, as acknowledged (``undo``: batches in flight, oldest first)."""
    pending: dict[str, tuple[bytes, int]] = {}
    for entry in undo or []:
        if P in entry:
            ids, before, offsets, _ = entry[P]  # the reference finds them by id, not row
            for i, record, offset in zip(ids, before, offsets.tolist(), strict=True):
                pending.setdefault(i, (record.tobytes(), offset))
    records, offsets = table.get(np.arange(start, stop))
    out_ids, out_values = [], []
    for k in range(start, stop):
        record, offset = records[k - start].tobytes(), int(offsets[k - start])
        if offset == ABSENT:
            continue
        record, offset = pending.get(ids_by_row[k], (record, offset))
        if offset == ABSENT:
            continue
        out_ids.append(ids_by_row[k].encode())
        out_values.append(record + struct.pack("<q", offset))
    return out_ids, out_values


def ref_packs(ids: list[bytes], values: list[bytes]) -> list[bytes]:
    """Greedy packing: as many items as fit in MAX_PACK_BYTES (at least one), in order."""
    groups: list[list[tuple[bytes, bytes]]] = []
    size = 0
    for i, v in zip(ids, values, strict=True):
        item = len(i) + 4 + len(v)
        if not groups or size + item > packed.MAX_PACK_BYTES - 16:  # 16: the header
            groups.append([])
            size = 0
        groups[-1].append((i, v))
        size += item
    out = []
    for group in groups:
        blob = b"".join(i for i, _ in group)
        header = struct.pack("<4sBBHII", b"SWPK", 1, 0, 0, len(group), len(blob))
        lengths = b"".join(struct.pack("<I", len(i)) for i, _ in group)
        out.append(header + b"".join(v for _, v in group) + lengths + blob)
    return out


def random_records(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros(n, ITEM_DTYPE)
    out.view(np.uint8)[:] = rng.integers(0, 256, n * ITEM_DTYPE.itemsize, dtype=np.uint8)
    return out


class World:
    """A table with ABSENT rows and batches in flight, and the cache's chunks of acknowledged ones."""

    def __init__(self, seed: int) -> None:
        rng = self.rng = np.random.default_rng(seed)
        prefixes = ["SKU-", "SKU-", "é-", "商品-x"]  # UTF-8 ids of 2 and 3 bytes a character too
        self.universe = [f"{prefixes[k % 4]}{k}" for k in rng.permutation(400).tolist()]
        self.table = PartitionTable(capacity=16)
        self.ids_by_row: list[str] = []
        self.offset = 0
        for _ in range(int(rng.integers(1, 6))):  # acknowledged batches, some rolled-back inserts
            self.put(self.pick(int(rng.integers(1, 120))), absent=rng.random() < 0.3)
        self.undo: list[dict[int, Any]] = []
        for _ in range(int(rng.integers(0, 4))):  # batches in flight (one of another partition)
            ids = self.pick(int(rng.integers(1, 80)))
            before, rows = self.put(ids)
            undo = (ids, *before, rows)
            self.undo.append({P: undo} if rng.random() < 0.85 else {P + 1: undo})
        self.chunks: list[Chunk] = []
        for _ in range(int(rng.integers(1, 7))):
            ids = self.pick(int(rng.integers(1, 90)))
            offsets = np.arange(self.offset, self.offset + len(ids), dtype=np.int64)
            self.offset += len(ids)
            self.chunks.append((ids, random_records(rng, len(ids)), offsets))

    def pick(self, n: int) -> list[str]:
        """Distinct ids, mostly among the first ones (a popular few repeat across batches)."""
        weights = 1.0 / np.arange(1, len(self.universe) + 1)
        at = self.rng.choice(len(self.universe), size=n, replace=False, p=weights / weights.sum())
        return [self.universe[k] for k in at.tolist()]

    def put(self, ids: list[str], *, absent: bool = False) -> Any:
        known = set(self.ids_by_row)
        self.ids_by_row += [i for i in ids if i not in known]  # a new id takes the next row
        offsets = np.full(len(ids), ABSENT) if absent else np.arange(self.offset, self.offset + len(ids))
        self.offset += len(ids)
        return self.table.put_rows(ids, random_records(self.rng, len(ids)), offsets)

    def store(self, rolling: RollingRewrite) -> Any:
        return SimpleNamespace(
            rolling=rolling, truncator=SimpleNamespace(results=list), owned={P},
            table=lambda _p: self.table, in_flight=lambda: self.undo,
        )  # fmt: skip


@pytest.mark.parametrize("acked_only", [True, False])
@pytest.mark.parametrize("seed", range(40))
def test_a_flush_writes_the_same_bytes_as_the_per_item_reference(
    seed: int, acked_only: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packed, "MAX_PACK_BYTES", [512 * 1024, 2048, 200][seed % 3])  # 200: one item a record
    world = World(seed)
    rolling = RollingRewrite(min_slice=int(world.rng.integers(1, 200)))
    rolling.begin(P, start=0)
    rolling.cut(P, rows=world.table.rows, changed=0)
    rolling.cycles[P].cut = int(world.rng.integers(0, world.table.rows))  # a slice anywhere in the table
    cache = ChangelogCache(TOPIC)
    for chunk in world.chunks:
        cache.add(StagedChanges({P: chunk}))
    pieces = []

    def build(p: int, chunk: Chunk) -> list[Any]:
        records, piece = write_partition(world.store(rolling), TOPIC, p, chunk, acked_only=acked_only)
        pieces.append(piece)
        return records

    taken = cache.take(build)
    ids, records, offsets = ref_latest(world.chunks)
    got_ids, got_records, got_offsets = taken.chunks[P]
    assert got_ids == ids
    assert [r.tobytes() for r in got_records] == records and got_offsets.tolist() == offsets
    [piece] = pieces
    assert piece is not None
    slice_ids, slice_values = ref_slice(
        world.table, world.ids_by_row, piece.start, piece.stop, world.undo if acked_only else None
    )
    changes = [r + struct.pack("<q", o) for r, o in zip(records, offsets, strict=True)]
    expected = ref_packs(slice_ids + [i.encode() for i in ids], slice_values + changes)
    assert [r.value for r in taken.records] == expected
    assert all(r.partition == P and packed.is_pack(r.key) for r in taken.records)
    written = [struct.unpack("<q", v[-8:])[0] for v in slice_values]
    assert piece.need == (max(written) + 1 if written else 0)


@pytest.mark.parametrize("by_rows", [False, True])
@pytest.mark.parametrize("seed", range(10))
def test_the_changes_alone_are_the_same_bytes_as_the_reference(seed: int, by_rows: bool) -> None:
    world = World(seed)
    cache = ChangelogCache(TOPIC)
    rows = PartitionTable()  # the rows the batches were put in: the cache deduplicates by them
    rows.put(world.universe, random_records(world.rng, len(world.universe)), np.zeros(len(world.universe)))
    for chunk in world.chunks:
        cache.add(StagedChanges({P: chunk}, rows={P: (rows, rows.find(chunk[0]))} if by_rows else {}))
    ids, records, offsets = ref_latest(world.chunks)
    changes = [r + struct.pack("<q", o) for r, o in zip(records, offsets, strict=True)]
    assert [r.value for r in cache.take().records] == ref_packs([i.encode() for i in ids], changes)


@pytest.mark.parametrize("seed", range(5))
def test_changes_of_distinct_items_by_rows_are_the_same_bytes_as_the_reference(seed: int) -> None:
    world = World(seed)  # every item changed once between two commits (no row repeats)
    rows = PartitionTable()
    rows.put(world.universe, random_records(world.rng, len(world.universe)), np.zeros(len(world.universe)))
    order = world.rng.permutation(len(world.universe)).tolist()
    cuts = sorted(world.rng.choice(np.arange(1, len(order)), size=3, replace=False).tolist())
    chunks = []
    for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True):
        ids = [world.universe[k] for k in order[a:b]]
        chunks.append((ids, random_records(world.rng, len(ids)), np.arange(a, b, dtype=np.int64)))
    cache = ChangelogCache(TOPIC)
    for chunk in chunks:
        cache.add(StagedChanges({P: chunk}, rows={P: (rows, rows.find(chunk[0]))}))
    ids, records, offsets = ref_latest(chunks)
    taken = cache.take()
    assert list(taken.chunks[P][0]) == ids and taken.items == len(order)
    changes = [r + struct.pack("<q", o) for r, o in zip(records, offsets, strict=True)]
    assert [r.value for r in taken.records] == ref_packs([i.encode() for i in ids], changes)
