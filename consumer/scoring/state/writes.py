"""What one flush (at-least-once) or batch (exactly-once) writes to a partition's changelog:
the next rewrite slice of its table (:mod:`.rolling`), then its changes, in packed records.

The slice comes first: a change of the same item in the same write is newer and must win. Under
at-least-once the slice holds each item's *acknowledged* state: a row changed by a batch still in
flight is written as it was before that batch (its change comes with a later flush, or is undone
by a rewind), an item inserted by such a batch not at all. Under exactly-once the slice's records
join the batch's transaction, after the earlier batches' ones: the table as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from consumer.ports import OutputRecord
from consumer.scoring.state.changelog import CHANGELOG_VALUE, changelog_values
from consumer.scoring.state.id_blob import IdBlob
from consumer.scoring.state.packed import pack_records
from consumer.scoring.state.record import ITEM_DTYPE, byte_rows
from consumer.scoring.state.rolling import Slice
from consumer.scoring.state.table import ABSENT, PartitionTable

if TYPE_CHECKING:
    from consumer.scoring.state.store import StateStore, Undo

__all__ = [
    "Pending",
    "partition_records",
    "pending_states",
    "slice_values",
    "truncate_cycles",
    "write_partition",
]

log = logging.getLogger(__name__)

Records = npt.NDArray[np.void]


@dataclass(frozen=True, slots=True, eq=False)
class Pending:
    """Rows of a slice changed by batches in flight (ascending), with the CHANGELOG_VALUE of their
    acknowledged states and those states' input offsets (ABSENT: inserted by such a batch)."""

    rows: npt.NDArray[np.int64]
    values: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]


def partition_records(
    topic: str,
    partition: int,
    changes: tuple[Sequence[str], Records, npt.ArrayLike],
    rewrite: tuple[IdBlob, npt.NDArray[np.uint8]] | None,
) -> list[OutputRecord]:
    """Packed records of a rewrite slice (ids, value rows) followed by ``changes`` (ids, records, offsets)."""
    ids, records, offsets = changes
    blob = IdBlob.encode(ids)
    values = changelog_values(records, offsets)
    if rewrite is not None and len(rewrite[0]):
        blob = rewrite[0] + blob
        values = np.concatenate([rewrite[1], values])
    if not len(blob):
        return []
    return pack_records(topic, partition, blob, values)


def slice_values(
    table: PartitionTable, piece: Slice, pending: Pending | None
) -> tuple[IdBlob, npt.NDArray[np.uint8]]:
    """The ids and CHANGELOG_VALUE rows of ``piece`` (``pending``: acknowledged states of items
    changed by batches in flight, see the module docstring); sets ``piece.need``."""
    ids, rows = table.row_ids(piece.start, piece.stop)
    records, offsets = table.get(rows)
    values = changelog_values(records, offsets)
    if pending is not None and pending.rows.size and rows.size:
        at = np.minimum(np.searchsorted(rows, pending.rows), rows.size - 1)
        hit = rows[at] == pending.rows
        values[at[hit]] = pending.values[hit]
        gone = at[hit][pending.offsets[hit] == ABSENT]  # new in a batch in flight: written with its change
        if gone.size:
            keep = np.ones(rows.size, bool)
            keep[gone] = False
            ids, values = ids.compress(keep), values[keep]
    if len(ids):
        written = values.view(CHANGELOG_VALUE).reshape(-1)["offset"]
        piece.need = max(piece.need, int(written.max()) + 1)
    return ids, values


def pending_states(piece: Slice, undo: Sequence[Undo]) -> Pending | None:
    """Each item of ``piece`` changed by a batch in flight (``undo``: oldest first) with its state
    before the oldest (None: no batch in flight changed the partition)."""
    got = [entry[piece.partition] for entry in undo if piece.partition in entry]
    if not got:
        return None
    rows = np.concatenate([g[3] for g in got])  # where the batches put them: no id hashed again
    rows = np.where((rows >= piece.start) & (rows < piece.stop), rows, -1)
    found, first = np.unique(rows, return_index=True)  # the first occurrence: the oldest batch's
    first = first[found >= 0]
    records = np.concatenate([byte_rows(g[1]) for g in got])[first].reshape(-1).view(ITEM_DTYPE)
    offsets = np.concatenate([g[2] for g in got])[first]
    return Pending(found[found >= 0].astype(np.int64), changelog_values(records, offsets), offsets)


def write_partition(
    store: StateStore,
    topic: str,
    partition: int,
    changes: tuple[list[str], Records, npt.NDArray[np.int64]],
    *,
    acked_only: bool,
) -> tuple[list[OutputRecord], Slice | None]:
    """The changelog records of a partition's changes with the next rewrite slice of its table
    (``acked_only``: at-least-once, see the module docstring)."""
    piece, rewrite = None, None
    if store.rolling is not None and _started(store) and partition in store.owned:
        table = store.table(partition)
        piece = store.rolling.cut(partition, rows=table.rows, changed=len(changes[0]))
        if piece is not None:
            pending = pending_states(piece, store.in_flight()) if acked_only else None
            rewrite = slice_values(table, piece, pending)
    return partition_records(topic, partition, changes, rewrite), piece


def truncate_cycles(store: StateStore) -> None:
    """Take the truncation thread's results; hand it every durable cycle (:mod:`.truncation`)."""
    if store.rolling is None or not _started(store):
        return
    for p, cycle in store.rolling.complete():
        committed = store.committed_offset(p)
        if committed is None or committed < cycle.need:
            continue  # inputs of its records not committed yet: a restore could still need older ones
        store.truncator.request(p, store.rolling.wait(p), cycle.start)


def _started(store: StateStore) -> bool:
    """Apply the cycles started meanwhile; False when the topic refuses truncation (rewrite stops)."""
    for done in store.truncator.results():
        if done.refused:
            log.warning(
                "%s refuses DeleteRecords (its cleanup.policy lacks delete): it is not truncated "
                "and grows with every change (docs/consume.md § Per-item state)",
                store.changelog.topic,
            )
            store.rolling = None
            return False
        if store.rolling is not None:
            store.rolling.started(done.partition, done.cycle, done.start)
    return store.rolling is not None
