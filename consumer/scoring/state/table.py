"""One partition's item states in flat numpy arrays: ~150 bytes per item, no Python object per item.

A ``dict[str, int]`` index alone costs ~150 bytes per item in CPython (the key string, the int,
the dict slot), so the index is an open-addressing hash table in numpy instead: each item id is
identified by two independent 64-bit hashes (``hash(id)``, SipHash, and FNV-1a of its UTF-8 bytes
with a 64-bit finaliser, :func:`detection.probe_kernel.byte_hashes`; 128 bits, collision odds
~1e-26 for 1M ids), its row holds the 112-byte item record
(:data:`.record.ITEM_DTYPE`: the detector's history and the alert episode) and the input offset of the last update applied to it, and the
slot array (int32, load <= 1/2) maps the first hash to the row. Python's string hash is salted
per process, which is fine: the index never leaves the process (the changelog keys are the ids).

A row whose offset is :data:`ABSENT` holds no item (an insert rolled back, a seed row retired:
:meth:`PartitionTable.drop`); the slot stays, so the id finds the same row if it comes back. A
row never moves nor changes its id (but :meth:`PartitionTable.repack`), so the rows a batch's
lookup found (:meth:`PartitionTable.find`) serve its put too (``rows=``): each distinct id of a
batch is hashed and probed once (the probe: :mod:`detection.probe_kernel`).

An item table also keeps each row's id as UTF-8 bytes in one growing buffer (4 bytes of end
offset per row plus the id): the changelog's rolling rewrite (:mod:`.rolling`) writes rows by
position, and needs their ids. The inventory seed's table keeps none (``keep_ids=False``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from consumer.scoring.state.id_blob import IdBlob
from consumer.scoring.state.item_ids import Hashes, distinct, id_hashes
from consumer.scoring.state.record import ITEM_DTYPE, as_items, byte_rows

__all__ = ["ABSENT", "PartitionTable"]

ABSENT: Final = -2  # offset of a row that holds no item
UNKNOWN_OFFSET: Final = -1  # an item whose input offset is not known (restored without one)
_EMPTY: Final = -1
IntArray = npt.NDArray[np.int64]
RowArray = npt.NDArray[np.intp]
Records = npt.NDArray[np.void]


class PartitionTable:
    """Item id -> (detector record, input offset of the last applied update), for one partition.

    ``dtype`` is the record type (the item's by default; the inventory seed keeps less). Records of
    the detector alone given to an item table are widened (no episode open).
    """

    __slots__ = ("_blob", "_blob_n", "_h1", "_h2", "_id_end", "_n", "_offsets", "_records", "_slots")

    def __init__(
        self, capacity: int = 1024, *, dtype: np.dtype[np.void] = ITEM_DTYPE, keep_ids: bool = True
    ) -> None:
        capacity = max(16, capacity)
        self._id_end: npt.NDArray[np.uint32] | None = np.zeros(capacity, np.uint32) if keep_ids else None
        self._blob = np.zeros(capacity * 12 if keep_ids else 0, np.uint8)  # the ids, UTF-8, row after row
        self._blob_n = 0
        self._h1 = np.zeros(capacity, np.uint64)
        self._h2 = np.zeros(capacity, np.uint64)
        self._records: Records = np.zeros(capacity, dtype)
        self._offsets: IntArray = np.full(capacity, ABSENT, np.int64)
        self._slots = np.full(_slot_count(capacity), _EMPTY, np.int32)
        self._n = 0  # rows used (including ABSENT ones)

    def __len__(self) -> int:
        """Items held (rows that are not ABSENT)."""
        return int(np.count_nonzero(self._offsets[: self._n] != ABSENT))

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (what the table costs beyond a few small objects)."""
        arrays = (self._h1, self._h2, self._records, self._offsets, self._slots, self._blob)
        return sum(a.nbytes for a in arrays) + (self._id_end.nbytes if self._id_end is not None else 0)

    @property
    def rows(self) -> int:
        """Rows used (items and ABSENT rows): what a rolling rewrite covers."""
        return self._n

    def row_ids(self, start: int, stop: int) -> tuple[IdBlob, IntArray]:
        """The ids (UTF-8) of rows ``start:stop`` that hold an item, and those rows."""
        if self._id_end is None:
            raise ValueError("this table keeps no ids")
        held = self._offsets[start:stop] != ABSENT
        rows = np.flatnonzero(held).astype(np.int64) + start
        ends = self._id_end[start:stop].astype(np.int64)
        first = int(self._id_end[start - 1]) if start > 0 else 0
        last = int(ends[-1]) if ends.size else first
        ids = IdBlob(self._blob[first:last].copy(), np.diff(ends, prepend=first))
        return (ids if held.all() else ids.compress(held)), rows

    def ids_of(self, rows: RowArray) -> IdBlob | None:
        """The ids (UTF-8) of ``rows`` (rows ids were put in), in their order; None: it keeps no ids."""
        from detection.probe_kernel import row_bytes  # numba loads with the first table use, not at import

        if self._id_end is None:
            return None
        return IdBlob(*row_bytes(self._id_end, self._blob, np.ascontiguousarray(rows, np.intp)))

    def compact(self) -> None:
        """Drop the spare capacity (after a bulk load that grew the table step by step)."""
        if self._n < self._h1.size:
            n = self._n
            self._h1, self._h2 = self._h1[:n].copy(), self._h2[:n].copy()
            self._records, self._offsets = self._records[:n].copy(), self._offsets[:n].copy()
            if self._id_end is not None:
                self._id_end, self._blob = self._id_end[:n].copy(), self._blob[: self._blob_n].copy()
            if self._slots.size > _slot_count(n):
                self._reindex(_slot_count(n))

    def hashes(self) -> Hashes:
        """The two hashes of each row that holds an item (what :meth:`drop` takes)."""
        held = self._offsets[: self._n] != ABSENT
        return self._h1[: self._n][held], self._h2[: self._n][held]

    def drop(self, h1: npt.NDArray[np.uint64], h2: npt.NDArray[np.uint64]) -> int:
        """Mark the rows of these ids (by their :func:`id_hashes`) ABSENT; returns how many held one."""
        if not h1.size or not self._n:
            return 0
        rows = self.held(self._find(h1, h2))
        rows = np.unique(rows[rows >= 0])  # an id given twice counts once
        self._offsets[rows] = ABSENT
        return int(rows.size)

    def repack(self) -> None:
        """Keep only the rows that hold an item, without spare capacity, re-placed by their stored
        hashes (no id needed: for a table that keeps none, like the inventory seed's)."""
        if self._id_end is not None:
            raise ValueError("repack() is for a table that keeps no ids")
        live = np.flatnonzero(self._offsets[: self._n] != ABSENT)
        self._h1, self._h2, self._offsets = self._h1[live], self._h2[live], self._offsets[live]
        self._records = _take(self._records, live)
        self._n = int(live.size)
        self._reindex(_slot_count(self._n))

    def lookup(self, item_ids: Sequence[str]) -> RowArray:
        """Row of each id, -1 for an id the table does not hold."""
        uniq, u = distinct(item_ids)  # a popular item updates several times a batch: hashed once
        return self.held(self.find(uniq))[u]

    def find(self, item_ids: Sequence[str], hashes: Hashes | None = None) -> RowArray:
        """Row of each id (ABSENT rows too: a rolled-back insert keeps its row), -1 for an id never put
        (``hashes``: :func:`id_hashes` of ``item_ids``, when known)."""
        return self._find(*(hashes if hashes is not None else id_hashes(item_ids)))

    def held(self, rows: RowArray) -> RowArray:
        """``rows`` (of :meth:`find`) with -1 for those that hold no item (ABSENT)."""
        if not self._offsets.size:  # compacted empty (an inventory seed of nothing): no row to read
            return np.full(rows.shape, -1, np.intp)
        return np.where((rows >= 0) & (self._offsets[rows] != ABSENT), rows, -1)  # rows[-1]: masked

    def get(self, rows: RowArray) -> tuple[Records, IntArray]:
        """Copies of the records and offsets of ``rows`` (valid rows only)."""
        return _take(self._records, rows), self._offsets[rows]

    def gather(self, found: RowArray) -> tuple[Records, IntArray]:
        """The records and offsets of rows of :meth:`find` (zeros and ABSENT where it found no item)."""
        rows = self.held(found)
        held = rows >= 0
        if held.all():
            return self.get(rows)
        records = np.zeros(rows.size, self._records.dtype)
        offsets = np.full(rows.size, ABSENT, np.int64)
        byte_rows(records)[held] = byte_rows(self._records)[rows[held]]
        offsets[held] = self._offsets[rows[held]]
        return records, offsets

    def put(
        self,
        item_ids: Sequence[str],
        records: Records,
        offsets: npt.ArrayLike,
        *,
        rows: RowArray | None = None,
    ) -> tuple[Records, IntArray]:
        """Write records and offsets of distinct ``item_ids``; returns what was there before
        (offset ABSENT for an item that was not held): writing that back undoes the put.

        ``rows``: what :meth:`find` gave for these ids on this table (-1 where it found none).
        """
        return self.put_rows(item_ids, records, offsets, rows=rows)[0]

    def put_rows(
        self,
        item_ids: Sequence[str],
        records: Records,
        offsets: npt.ArrayLike,
        *,
        rows: RowArray | None = None,
    ) -> tuple[tuple[Records, IntArray], RowArray]:
        """:meth:`put`, and the row of each id (the changelog cache deduplicates by row)."""
        records = self._typed(records)
        n = len(item_ids)
        rows = np.full(n, -1, np.intp) if rows is None else np.array(rows, dtype=np.intp, copy=True)
        todo = np.flatnonzero(rows < 0)  # not found, or not looked up: hashed and probed here
        if todo.size:
            h1, h2 = id_hashes([item_ids[i] for i in todo.tolist()])
            found = self._find(h1, h2)
            rows[todo] = found
            new = np.flatnonzero(found < 0)
            if new.size:
                rows[todo[new]] = self._insert(h1[new], h2[new])
                self._add_ids([item_ids[k] for k in todo[new].tolist()])
        before = _take(self._records, rows), self._offsets[rows]
        byte_rows(self._records)[rows] = byte_rows(np.ascontiguousarray(records, dtype=self._records.dtype))
        self._offsets[rows] = offsets
        return before, rows

    def load(
        self,
        item_ids: Sequence[str],
        records: Records,
        offsets: npt.ArrayLike,
        *,
        void: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """Bulk insert into an empty table (a restore); of repeated ids the last one wins, and an
        id whose last record is ``void`` is left out (a damaged state: the item starts unknown)."""
        if self._n:
            raise ValueError("load() needs an empty table")
        records = self._typed(records)
        h1, h2 = id_hashes(item_ids)
        offsets = np.asarray(offsets, dtype=np.int64)
        order = np.lexsort((h2, h1))  # stable: equal ids keep their changelog order
        s1, s2 = h1[order], h2[order]
        last = np.ones(order.size, bool)
        last[:-1] = (s1[1:] != s1[:-1]) | (s2[1:] != s2[:-1])
        keep = np.sort(order[last])
        if void is not None:
            keep = keep[~void[keep]]
        if keep.size < len(item_ids):
            h1, h2, records, offsets = h1[keep], h2[keep], records[keep], offsets[keep]
            item_ids = [item_ids[k] for k in keep.tolist()]
        n = h1.size
        if n > self._h1.size:
            self._grow(n)
        self._insert(h1, h2)
        if self._id_end is not None:
            self._blob = np.zeros(0, np.uint8)  # sized to the ids exactly (a restore adds no more soon)
        self._add_ids(item_ids)
        byte_rows(self._records[:n])[:] = byte_rows(np.ascontiguousarray(records))  # 20x a structured copy
        self._offsets[:n] = offsets

    def _add_ids(self, item_ids: Sequence[str]) -> None:
        """Append the ids of the rows just inserted (in row order)."""
        if self._id_end is None or not item_ids:
            return
        encoded = list(map(str.encode, item_ids))
        data = np.frombuffer(b"".join(encoded), np.uint8)
        need = self._blob_n + data.size
        if need > self._blob.size:
            grown = np.zeros(max(need, self._blob.size * 5 // 4), np.uint8)
            grown[: self._blob_n] = self._blob[: self._blob_n]
            self._blob = grown
        self._blob[self._blob_n : need] = data
        first = self._n - len(encoded)
        lengths = np.fromiter(map(len, encoded), np.int64, count=len(encoded))
        self._id_end[first : self._n] = self._blob_n + np.cumsum(lengths)
        self._blob_n = need

    def _typed(self, records: Records) -> Records:
        return as_items(records) if self._records.dtype == ITEM_DTYPE else records

    # ------------------------------------------------------------------ the hash index

    def _find(self, h1: npt.NDArray[np.uint64], h2: npt.NDArray[np.uint64]) -> RowArray:
        from detection.probe_kernel import find_rows  # numba loads with the first probe, not at import

        return find_rows(self._slots, self._h1, self._h2, h1, h2)

    def _insert(self, h1: npt.NDArray[np.uint64], h2: npt.NDArray[np.uint64]) -> RowArray:
        """Append rows for new (absent, distinct) hashes and index them; returns their rows."""
        start, need = self._n, self._n + h1.size
        if need > self._h1.size:
            self._grow(max(need, self._h1.size * 5 // 4))  # 1.25x: memory per item stays near 150 bytes
        rows = np.arange(start, need, dtype=np.intp)
        self._h1[rows], self._h2[rows] = h1, h2
        self._n = need
        if 2 * need > self._slots.size:
            self._reindex(_slot_count(need))
        else:
            self._place(rows)
        return rows

    def _grow(self, capacity: int) -> None:
        n = self._n
        for name, fill in (("_h1", 0), ("_h2", 0), ("_records", 0), ("_offsets", ABSENT)):
            old = getattr(self, name)
            new = np.zeros(capacity, old.dtype) if fill == 0 else np.full(capacity, fill, old.dtype)
            new[:n] = old[:n]
            setattr(self, name, new)
        if self._id_end is not None:
            ends = np.zeros(capacity, np.uint32)
            ends[:n] = self._id_end[:n]
            self._id_end = ends

    def _reindex(self, n_slots: int) -> None:
        self._slots = np.full(n_slots, _EMPTY, np.int32)
        self._place(np.arange(self._n, dtype=np.intp))

    def _place(self, rows: RowArray) -> None:
        """Linear probing, vectorised: each round every key tries its slot, one winner per slot."""
        slots, mask = self._slots, self._slots.size - 1
        pos = (self._h1[rows] & np.uint64(mask)).astype(np.intp)
        todo = np.arange(rows.size)
        while todo.size:
            p = pos[todo]
            free = slots[p] == _EMPTY
            cand, at = todo[free], p[free]
            slots[at] = rows[cand]  # of several keys aiming at one slot, the last write stays
            placed = np.zeros(todo.size, bool)
            placed[np.flatnonzero(free)] = slots[at] == rows[cand]
            todo = todo[~placed]
            pos[todo] = (pos[todo] + 1) & mask


def _take(records: Records, rows: RowArray) -> Records:
    """``records[rows]`` as a byte copy (a structured one is ~20x slower, fancy indexing ~3x)."""
    return np.take(byte_rows(records), rows, axis=0).reshape(-1).view(records.dtype)


def _slot_count(items: int) -> int:
    """The next power of two of at least twice ``items`` (load <= 1/2 keeps probes short)."""
    return 1 << max(4, (2 * items - 1).bit_length())
