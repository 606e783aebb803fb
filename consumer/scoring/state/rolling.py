"""The changelog's rolling rewrite: what keeps a log of packed records bounded.

Packed records (:mod:`.packed`) have unique keys, so compaction never removes one: the log is
truncated instead (DeleteRecords). Each time a partition's changes are written (a flush
at-least-once, a batch exactly-once) the next slice of its table's rows is written with them,
at least as many rows as changes (:data:`MIN_SLICE` at least, :data:`MAX_SLICE` at most). A
*cycle* covers the rows its table had when its first slice was cut; once every slice is
acknowledged and the group has committed past every input offset those records carry, every item
has a usable record at or after the cycle's *start* (the changelog's end offset when the cycle
began, a lower bound of its first record): records below it are void, and deleted. Only then does
the next cycle begin (its start is read after the truncation, before its first slice is cut;
both off the loop thread, :mod:`.truncation`).

Bound: a cycle writes its table once and lasts while at most as many changes are written, so the
log holds about two cycles: ~2 x (table + as many changes) item states, plus compacted lineage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = ["MAX_SLICE", "MIN_SLICE", "Cycle", "RollingRewrite", "Slice"]

MIN_SLICE: Final = 1024  # rows: a small table is rewritten in a few flushes
MAX_SLICE: Final = 65_536  # rows (~8 MB): one flush never carries more rewrite than this


@dataclass(slots=True, eq=False)
class Cycle:
    start: int | None  # changelog offset it began at (None: unknown; this cycle truncates nothing)
    rows: int | None = None  # rows it covers (set by its first slice)
    cut: int = 0  # rows handed out in slices
    acked: int = 0  # rows whose records are acknowledged
    need: int = 0  # the group must have committed this input offset before the truncation
    ready: bool = True  # False until its start is read (:mod:`.truncation`): no slice before


@dataclass(slots=True, eq=False)
class Slice:
    """Rows ``start:stop`` of a partition's table, written in one flush or batch."""

    partition: int
    cycle: Cycle
    start: int
    stop: int
    need: int = 0  # one past the largest input offset its records carry (set by the writer)


@dataclass(slots=True)
class RollingRewrite:
    """Each owned partition's current cycle (pure bookkeeping; the store does the I/O)."""

    min_slice: int = MIN_SLICE
    max_slice: int = MAX_SLICE
    cycles: dict[int, Cycle] = field(default_factory=dict)

    def begin(self, partition: int, start: int | None) -> None:
        self.cycles[partition] = Cycle(start)

    def wait(self, partition: int) -> Cycle:
        """The partition's next cycle, cutting nothing until :meth:`started`."""
        cycle = self.cycles[partition] = Cycle(None, ready=False)
        return cycle

    def started(self, partition: int, cycle: Cycle, start: int | None) -> None:
        if self.cycles.get(partition) is cycle:  # else revoked (or started afresh) meanwhile
            cycle.start, cycle.ready = start, True

    def drop(self, partition: int) -> None:
        self.cycles.pop(partition, None)

    def cut(self, partition: int, *, rows: int, changed: int) -> Slice | None:
        """The next slice to write with ``changed`` changes of a table of ``rows`` rows, or None
        (no cycle, an empty table, or every slice of the cycle handed out: it waits to be durable)."""
        cycle = self.cycles.get(partition)
        if cycle is None or not cycle.ready:
            return None
        if cycle.rows is None:
            if not rows:
                return None
            cycle.rows = rows
        if cycle.cut >= cycle.rows:
            return None
        size = min(max(changed, self.min_slice), self.max_slice)
        piece = Slice(partition, cycle, cycle.cut, min(cycle.rows, cycle.cut + size))
        cycle.cut = piece.stop
        return piece

    def failed(self, slices: list[Slice]) -> None:
        """Slices not acknowledged: cut again (only while their cycle is still the partition's)."""
        for piece in slices:
            if self.cycles.get(piece.partition) is piece.cycle:
                piece.cycle.cut = min(piece.cycle.cut, piece.start)

    def rewind(self) -> None:
        """Every slice not acknowledged is void (a rewind: whether it was written is not known)."""
        for cycle in self.cycles.values():
            cycle.cut = min(cycle.cut, cycle.acked)

    def acked(self, slices: list[Slice]) -> None:
        for piece in slices:
            cycle = piece.cycle
            if self.cycles.get(piece.partition) is cycle and piece.start <= cycle.acked:
                cycle.acked = max(cycle.acked, piece.stop)
                cycle.need = max(cycle.need, piece.need)

    def complete(self) -> list[tuple[int, Cycle]]:
        """Partitions whose cycle is wholly acknowledged (truncate, then :meth:`begin` the next)."""
        return [(p, c) for p, c in sorted(self.cycles.items()) if c.rows is not None and c.acked >= c.rows]
