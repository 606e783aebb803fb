"""A batch's items on the change path: their prior states in, their changed records out.

:func:`prior_states` gathers each distinct item's state once (from its partition table, else the
inventory seed) for ``ChangeDetector.decide_local``; :func:`staged_changes` groups the changed
records by input partition, with the input offset of each item's last update (for the changelog)
and the rows the batch's lookup found them in (:mod:`.batch_keys`: the put needs no second probe).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from consumer.scoring.state.batch_keys import BatchKeys
from consumer.scoring.state.item_ids import distinct
from consumer.scoring.state.seeds import Seeds
from consumer.scoring.state.store import StagedChanges
from detection import UpdateBatch
from detection.detector import baseline_table
from detection.item_state import STATE_DTYPE, words

__all__ = ["BatchItems", "prior_states", "staged_changes"]


@dataclass(frozen=True, slots=True, eq=False)
class BatchItems:
    """The batch's distinct items (first-occurrence order) and their states, for ``decide_local``."""

    ids: list[str]
    u: npt.NDArray[np.intp]  # per update: its item's index in ``ids``
    records: npt.NDArray[np.void]  # per item: its state (STATE_DTYPE), where ``known``
    known: npt.NDArray[np.bool_]
    keys: BatchKeys | None = None  # the lookup's rows, for the put (see staged_changes)


def prior_states(
    updates: UpdateBatch,
    prior: npt.NDArray[np.void],
    known: npt.NDArray[np.bool_],
    seeds: Seeds | None,
    keys: BatchKeys | None = None,
) -> BatchItems:
    """The batch's items' states: from the partition tables, else from the inventory snapshot
    (``keys``: of ``updates.item_ids``, as :meth:`.StateStore.prior` was given them)."""
    uniq, u = (keys.ids, keys.u) if keys is not None else distinct(updates.item_ids)
    k = len(uniq)
    records = np.zeros(k, STATE_DTYPE)
    have = np.zeros(k, dtype=bool)
    rows = np.flatnonzero(known)
    if rows.size:
        pick = np.full(k, -1, dtype=np.intp)
        np.maximum.at(pick, u[rows], rows)  # an item's last known update: the table it is read from
        have = pick >= 0
        if have.all():  # the usual on a warm table (take: ~5x a masked assignment)
            words(records)[:] = np.take(words(prior), pick, axis=0)
        else:
            words(records)[have] = words(prior)[pick[have]]
    if seeds is not None and not have.all():
        missing = np.flatnonzero(~have)
        unknown = [uniq[j] for j in missing.tolist()]
        seeded = baseline_table(seeds.seed(unknown))
        at = seeded.lookup(unknown)
        found = at >= 0
        if found.any():
            words(records)[missing[found]] = words(seeded.gather(at[found]))
            have[missing[found]] = True
    return BatchItems(uniq, u, records, have, keys)


def staged_changes(
    items: BatchItems,
    touched: npt.NDArray[np.bool_],
    input_offsets: npt.NDArray[np.int64],
    partitions: list[int],
) -> StagedChanges:
    """Each changed item's record, under its input partition, with the input offset of its last update."""
    n = len(input_offsets)
    last = np.full(len(items.ids), -1, dtype=np.intp)
    np.maximum.at(last, items.u, np.arange(n, dtype=np.intp))  # later rows win
    changed = np.flatnonzero(touched)
    at = last[changed]
    offsets = input_offsets[at]
    records = np.take(words(items.records), changed, axis=0).reshape(-1).view(STATE_DTYPE)
    every = changed.size == len(items.ids)  # the usual: each update changes its item's history
    ids = list(items.ids) if every else list(map(items.ids.__getitem__, changed.tolist()))
    out = StagedChanges()
    keys = items.keys
    hints, tables = (keys.rows[at], keys.tables) if keys is not None and keys.rows is not None else (None, {})
    if changed.size and partitions.count(partitions[0]) == len(partitions):  # the usual: one partition
        p = int(partitions[0])
        out.by_partition[p] = (ids, records, offsets)
        if hints is not None and p in tables:
            out.rows[p] = (tables[p], hints)
        return out
    parts = np.asarray(partitions, dtype=np.int64)[at]
    for p in np.unique(parts).tolist():
        sel = np.flatnonzero(parts == p)
        out.by_partition[p] = ([ids[j] for j in sel.tolist()], records[sel], offsets[sel])
        if hints is not None and p in tables:
            out.rows[p] = (tables[p], hints[sel])
    return out
