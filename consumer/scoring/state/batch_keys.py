"""A batch's item ids, deduplicated once and looked up once, for its prior states and its put.

:meth:`.store.StateStore.prior` fills in where each update's item is in its partition's table
(``rows``); :func:`.batch_items.prior_states` reuses the deduplication and
:func:`.batch_items.staged_changes` hands the changed items' rows to the put (a row never moves
nor changes its id in its table, so they stay valid for that table object).

:meth:`BatchKeys.of` deduplicates by the ids' second hash and bytes, compiled
(:func:`detection.probe_kernel.distinct_joined`: the ids joined by NULs, so no pass per id for
the lengths), and only the distinct ids get the first hash
(``hash``): no dict of the batch's ids, and the probe hashes nothing again (:func:`.item_ids.distinct`
stays the reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from consumer.scoring.state.id_blob import IdBlob
from consumer.scoring.state.item_ids import Hashes, first_hashes
from consumer.scoring.state.table import PartitionTable

__all__ = ["BatchKeys"]

RowArray = npt.NDArray[np.intp]


@dataclass(slots=True, eq=False)
class BatchKeys:
    """The distinct ids of a batch's updates and, once looked up, each update's table row."""

    ids: list[str]  # distinct, first-occurrence order
    u: RowArray  # per update: its id's index in ``ids``
    rows: RowArray | None = None  # per update: PartitionTable.find's row (-1 none); set by prior()
    tables: dict[int, PartitionTable] = field(default_factory=dict)  # the tables ``rows`` are of
    hashes: Hashes | None = None  # of ``ids``: item_ids.id_hashes's (the probe needs no second pass)

    @classmethod
    def of(cls, item_ids: Sequence[str]) -> BatchKeys:
        from detection.probe_kernel import distinct_bytes, distinct_joined  # numba loads with the first batch

        joined = "\0".join(item_ids).encode("utf-8", "surrogatepass")  # as item_ids.second_hashes encodes
        got = distinct_joined(np.frombuffer(joined, np.uint8), len(item_ids))
        if got is None:  # an id holds a NUL: split by lengths instead
            blob = IdBlob.encode(item_ids, errors="surrogatepass")
            got = distinct_bytes(blob.data, np.cumsum(blob.lengths))
        u, first, h2 = got
        if first.size == len(item_ids):  # all distinct: in their order
            ids = list(item_ids)
        elif first.size < 2:  # itemgetter of one index gives no tuple
            ids = [item_ids[k] for k in first.tolist()]
        else:  # one itemgetter call: ~1.7x map(item_ids.__getitem__, ...)
            ids = list(itemgetter(*first.tolist())(item_ids))
        return cls(ids, u, hashes=(first_hashes(ids), h2))
