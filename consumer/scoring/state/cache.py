"""The changelog records of acknowledged batches, held until the next offset commit (at-least-once).

Kafka Streams' record cache (``cache.max.bytes.buffering`` with ``commit.interval.ms``): an item
changed by several batches between two commits costs one item state (packed records), written when the
offsets are about to be committed (:meth:`ChangelogCache.take`). The loop commits only after that
flush is acknowledged, and the flush holds every batch acknowledged so far, so each item's last
changelog record below the committed offset is its state at that offset. A crash before the
commit loses only uncommitted input: a restore ignores records whose input offset is not below
the committed one, and the input is replayed onto the state before it (nothing applied twice).

Under exactly-once there is no cache: each batch's records join its transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Final

import numpy as np
import numpy.typing as npt

from consumer.ports import OutputRecord
from consumer.scoring.state.changelog import changelog_records
from consumer.scoring.state.id_blob import EncodedIds
from consumer.scoring.state.record import byte_rows
from consumer.scoring.state.store import StagedChanges
from consumer.scoring.state.table import PartitionTable

__all__ = ["ChangelogCache", "Taken"]

Records = npt.NDArray[np.void]
Chunk = tuple[list[str], Records, npt.NDArray[np.int64]]
Rows = (
    tuple[PartitionTable, npt.NDArray[np.intp]] | None
)  # a chunk's items' table and rows there (None: unknown)
MERGE_AFTER: Final = 32  # chunks of a partition before they are merged (commits refused for long)


@dataclass(frozen=True, slots=True)
class Taken:
    """What one flush took: the records to write and the chunks to give back if they are not acked."""

    records: list[OutputRecord]
    chunks: dict[int, Chunk]
    items: int  # item states written (distinct items; packed: many per record)
    changes: int  # changes they stand for (one per item and batch)


class ChangelogCache:
    """Each partition's changes of acknowledged batches, oldest first; an item's last one wins."""

    __slots__ = ("_chunks", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._chunks: dict[int, list[tuple[Chunk, Rows]]] = {}

    def __len__(self) -> int:
        """Changes held (an item changed by two batches counts twice until a flush)."""
        return sum(len(chunk[0]) for chunks in self._chunks.values() for chunk, _ in chunks)

    def add(self, changes: StagedChanges) -> None:
        """A batch's changes, now acknowledged (its other outputs are durable)."""
        for p, chunk in changes.by_partition.items():
            if chunk[0]:
                chunks = self._chunks.setdefault(p, [])
                chunks.append((chunk, changes.rows.get(p)))
                if len(chunks) > MERGE_AFTER:
                    self._chunks[p] = [_latest(chunks)]

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions: their next owner restores what was committed."""
        for p in partitions:
            self._chunks.pop(p, None)

    def take(self, build: Callable[[int, Chunk], list[OutputRecord]] | None = None) -> Taken:
        """Every held change, each item once, as packed records per partition (``build``: how, else
        the changes alone); removed: :meth:`give_back` if not acknowledged."""
        changes = len(self)
        taken = {p: _encoded(*_latest(chunks)) for p, chunks in self._chunks.items() if chunks}
        self._chunks = {}
        records: list[OutputRecord] = []
        for p, chunk in sorted(taken.items()):
            records += build(p, chunk) if build is not None else changelog_records(self.topic, p, *chunk)
        return Taken(records, taken, sum(len(ids) for ids, _, _ in taken.values()), changes)

    def give_back(self, taken: Taken) -> None:
        """A flush not acknowledged: its changes go first again (changes added since are newer)."""
        for p, chunk in taken.chunks.items():
            self._chunks.setdefault(p, []).insert(0, (chunk, None))


def _latest(held: list[tuple[Chunk, Rows]]) -> tuple[Chunk, Rows]:
    """One chunk with each item's last change, where the item first came (one record per item:
    the order among them does not matter to a restore), and its rows when every chunk has some."""
    if len(held) == 1:
        return held[0]
    chunks = [chunk for chunk, _ in held]
    ids = list(chain.from_iterable(c[0] for c in chunks))
    same = _rows_of(held)
    if same is None:
        last = dict(zip(ids, range(len(ids)), strict=True))  # a later row of an id overwrites its slot
        pick = np.fromiter(last.values(), np.intp, count=len(last))
        uniq = list(last)
    else:  # the same by ints: ~4x faster than a dict of the id strings
        pick = _last_of_rows(same[1])
        if pick.size == len(ids):  # no item changed twice (pick is 0..n-1): the chunks as they are
            records = np.concatenate([byte_rows(c[1]) for c in chunks]).reshape(-1).view(chunks[0][1].dtype)
            return (ids, records, np.concatenate([c[2] for c in chunks])), (same[0], np.concatenate(same[1]))
        uniq = _items(ids, pick)
    raw = np.concatenate(
        [byte_rows(c[1]) for c in chunks]
    )  # as bytes: a structured concatenate is ~10x slower
    offsets = np.concatenate([c[2] for c in chunks])
    picked = np.take(raw, pick, axis=0)  # ~4x raw[pick] (fancy indexing of byte rows)
    merged = (uniq, picked.reshape(-1).view(chunks[0][1].dtype), offsets[pick])
    return merged, (None if same is None else (same[0], np.concatenate(same[1])[pick]))


def _encoded(chunk: Chunk, rows: Rows) -> Chunk:
    """``chunk`` with its ids' UTF-8 from the table they were put in, when its rows are known
    (a row never changes its id): the flush gathers bytes instead of encoding ~1 id per change."""
    ids = chunk[0]
    if rows is None or rows[1].size != len(ids) or not ids or int(rows[1].min()) < 0:
        return chunk
    blob = rows[0].ids_of(rows[1])
    return chunk if blob is None else (EncodedIds(ids, blob), chunk[1], chunk[2])


def _items(ids: list[str], at: npt.NDArray[np.intp]) -> list[str]:
    """``[ids[k] for k in at]``: one itemgetter call, ~1.7x ``map(ids.__getitem__, ...)``."""
    if at.size < 2:  # itemgetter of one index gives the item, not a tuple
        return [ids[k] for k in at.tolist()]
    return list(itemgetter(*at.tolist())(ids))


def _rows_of(held: list[tuple[Chunk, Rows]]) -> tuple[PartitionTable, list[npt.NDArray[np.intp]]] | None:
    """Each chunk's rows when all are rows of one table (there a row identifies an id), else None."""
    got = [r for _, r in held if r is not None]
    if len(got) < len(held) or any(t is not got[0][0] for t, _ in got):
        return None
    for (chunk, _), (_, rows) in zip(held, got, strict=True):
        if rows.size != len(chunk[0]) or int(rows.min()) < 0:
            return None  # a lookup's rows never put (its partition was revoked meanwhile)
    return got[0][0], [rows for _, rows in got]


def _last_of_rows(rows: list[npt.NDArray[np.intp]]) -> npt.NDArray[np.intp]:
    """Per distinct row in first-occurrence order, the position (in the concatenation) of its last
    occurrence: what ``_latest``'s dict does with ids (the rows of one chunk are distinct)."""
    every = np.concatenate(rows)
    starts = np.cumsum([0] + [r.size for r in rows]).tolist()
    at = np.empty(int(every.max()) + 1, np.intp)  # by row: only the rows of ``every`` are read
    for k in range(len(rows) - 1, -1, -1):  # newest first: each row ends at its first position
        at[rows[k]] = np.arange(starts[k], starts[k + 1])
    first = at[every] == np.arange(every.size)
    for k in range(len(rows)):  # oldest first: each row ends at its last position
        at[rows[k]] = np.arange(starts[k], starts[k + 1])
    last: npt.NDArray[np.intp] = at[every[first]]
    return last
