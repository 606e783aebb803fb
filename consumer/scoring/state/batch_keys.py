"""A batch's item ids, deduplicated once and looked up once, for its prior states and its put.

:meth:`.store.StateStore.prior` fills in where each update's item is in its partition's table
(``rows``); :func:`.batch_items.prior_states` reuses the deduplication and
:func:`.batch_items.staged_changes` hands the changed items' rows to the put (a row never moves
nor changes its id in its table, so they stay valid for that table object).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from consumer.scoring.state.table import PartitionTable, distinct

__all__ = ["BatchKeys"]

RowArray = npt.NDArray[np.intp]


@dataclass(slots=True, eq=False)
class BatchKeys:
    """The distinct ids of a batch's updates and, once looked up, each update's table row."""

    ids: list[str]  # distinct, first-occurrence order
    u: RowArray  # per update: its id's index in ``ids``
    rows: RowArray | None = None  # per update: PartitionTable.find's row (-1 none); set by prior()
    tables: dict[int, PartitionTable] = field(default_factory=dict)  # the tables ``rows`` are of

    @classmethod
    def of(cls, item_ids: Sequence[str]) -> BatchKeys:
        return cls(*distinct(item_ids))
