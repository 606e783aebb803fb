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
from typing import Final

import numpy as np
import numpy.typing as npt

from consumer.ports import OutputRecord
from consumer.scoring.state.changelog import changelog_records
from consumer.scoring.state.record import byte_rows
from consumer.scoring.state.store import StagedChanges

__all__ = ["ChangelogCache", "Taken"]

Records = npt.NDArray[np.void]
Chunk = tuple[list[str], Records, npt.NDArray[np.int64]]
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
        self._chunks: dict[int, list[Chunk]] = {}

    def __len__(self) -> int:
        """Changes held (an item changed by two batches counts twice until a flush)."""
        return sum(len(ids) for chunks in self._chunks.values() for ids, _, _ in chunks)

    def add(self, changes: StagedChanges) -> None:
        """A batch's changes, now acknowledged (its other outputs are durable)."""
        for p, chunk in changes.by_partition.items():
            if chunk[0]:
                chunks = self._chunks.setdefault(p, [])
                chunks.append(chunk)
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
        taken = {p: _latest(chunks) for p, chunks in self._chunks.items() if chunks}
        self._chunks = {}
        records: list[OutputRecord] = []
        for p, chunk in sorted(taken.items()):
            records += build(p, chunk) if build is not None else changelog_records(self.topic, p, *chunk)
        return Taken(records, taken, sum(len(ids) for ids, _, _ in taken.values()), changes)

    def give_back(self, taken: Taken) -> None:
        """A flush not acknowledged: its changes go first again (changes added since are newer)."""
        for p, chunk in taken.chunks.items():
            self._chunks.setdefault(p, []).insert(0, chunk)


def _latest(chunks: list[Chunk]) -> Chunk:
    """One chunk with each item's last change, where the item first came (one record per item:
    the order among them does not matter to a restore)."""
    if len(chunks) == 1:
        return chunks[0]
    ids = list(chain.from_iterable(c[0] for c in chunks))
    last = dict(zip(ids, range(len(ids)), strict=True))  # a later row of an id overwrites its slot
    rows = np.fromiter(last.values(), np.intp, count=len(last))
    raw = np.concatenate(
        [byte_rows(c[1]) for c in chunks]
    )  # as bytes: a structured concatenate is ~10x slower
    offsets = np.concatenate([c[2] for c in chunks])
    return list(last), raw[rows].reshape(-1).view(chunks[0][1].dtype), offsets[rows]
