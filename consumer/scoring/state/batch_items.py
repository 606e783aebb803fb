"""A batch's items on the change path: their prior states in, their changed records out.

:func:`prior_states` gathers each distinct item's state once (from its partition table, else the
inventory seed) for ``ChangeDetector.decide_local``; :func:`staged_changes` groups the changed
records by input partition, with the input offset of each item's last update (for the changelog).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
    index: dict[str, int] | None = None  # item id -> its index in ``ids``, when it was built


def prior_states(
    updates: UpdateBatch,
    prior: npt.NDArray[np.void],
    known: npt.NDArray[np.bool_],
    seeds: Seeds | None,
) -> BatchItems:
    """The batch's items' states: from the partition tables, else from the inventory snapshot."""
    ids = updates.item_ids
    n = len(ids)
    uniq = list(dict.fromkeys(ids))
    k = len(uniq)
    index = None
    if k == n:
        u = np.arange(n, dtype=np.intp)
    else:
        index = dict(zip(uniq, range(k), strict=True))
        u = np.fromiter(map(index.__getitem__, ids), dtype=np.intp, count=n)
    records = np.zeros(k, STATE_DTYPE)
    have = np.zeros(k, dtype=bool)
    rows = np.flatnonzero(known)
    if rows.size:
        pick = np.full(k, -1, dtype=np.intp)
        np.maximum.at(pick, u[rows], rows)  # an item's last known update: the table it is read from
        have = pick >= 0
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
    return BatchItems(uniq, u, records, have, index)


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
    records = words(items.records)[changed].reshape(-1).view(STATE_DTYPE)
    ids = list(map(items.ids.__getitem__, changed.tolist()))
    out = StagedChanges()
    parts = np.asarray(partitions, dtype=np.int64)[at]
    if parts.size and parts[0] == parts[-1] and (parts == parts[0]).all():  # the usual: one partition
        out.by_partition[int(parts[0])] = (ids, records, offsets)
        return out
    for p in np.unique(parts).tolist():
        sel = np.flatnonzero(parts == p)
        out.by_partition[p] = ([ids[j] for j in sel.tolist()], records[sel], offsets[sel])
    return out
