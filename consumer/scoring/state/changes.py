"""What one batch changes in the state store, and what one partition's restore did.

:class:`StagedChanges` travels from the batch that decided them to the store (applied, then kept
undoable until acknowledged: :data:`Undo`) and to the changelog cache (:mod:`.cache`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from consumer.scoring.state.rolling import Slice
from consumer.scoring.state.table import PartitionTable

__all__ = ["Restore", "StagedChanges", "Undo"]

Records = npt.NDArray[np.void]
# per partition, what a batch overwrote (ids, records, offsets: ABSENT not held) and the rows it put
Undo = dict[int, tuple[list[str], Records, npt.NDArray[np.int64], npt.NDArray[np.intp]]]


@dataclass(slots=True)
class StagedChanges:
    """A batch's new records per input partition: (item ids, records, input offsets)."""

    by_partition: dict[int, tuple[list[str], Records, npt.NDArray[np.int64]]] = field(default_factory=dict)
    resets: set[int] = field(default_factory=set)  # partitions this batch starts afresh (marked first)
    slices: list[Slice] = field(default_factory=list)  # rewrite slices its changelog records carry
    # per partition: the table its items were looked up in and their rows there (-1: none), so the
    # put needs no second hash and probe (used only while that table is the partition's); once
    # applied, the rows they were put in (the changelog cache deduplicates by them)
    rows: dict[int, tuple[PartitionTable, npt.NDArray[np.intp]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(ids) for ids, _, _ in self.by_partition.values())


@dataclass(frozen=True, slots=True)
class Restore:
    """What restoring one partition did (for logs, metrics and the bench)."""

    partition: int
    items: int
    read: int
    ignored: int
    seconds: float
    reset: str = ""  # why the partition started afresh ("" = restored)
    dropped: int = 0  # item states no StockWatch writes (NaN, out of range): their items start unknown
