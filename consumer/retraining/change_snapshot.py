"""A streamed Mongo snapshot as the ``default`` detector's training input: an update batch of states.

The same documents as :mod:`consumer.retraining.snapshot`, read with the peer-group field and
``occurred_at`` besides the item's numbers, and parsed chunk by chunk with
:func:`detection.parse_updates` — what ``stockwatch train --detector default --items S`` reads from
a file. A snapshot holds one *state* per item: a document lacking one of the four numbers is
invalid here (counted with a few example reasons), as is one that does not parse; excluded items
(flagged, confirmed anomalies) are left out and counted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from consumer.chunks import chunked
from consumer.retraining.snapshot import MAX_EXAMPLES, DocCounts, SnapshotCounts
from detection import UpdateBatch, parse_updates

__all__ = ["UpdateSnapshot", "collect_updates", "concat_batches"]

log = logging.getLogger(__name__)

_NUMBERS = ("stock", "min", "max", "price")
_NAMES = ("stock_quantity", "min_stock_level", "max_stock_level", "price")
_COLUMNS = (*_NUMBERS, "occurred_at")


@dataclass(slots=True, kw_only=True)
class UpdateSnapshot(SnapshotCounts):
    """The complete item states of a snapshot as one :class:`UpdateBatch`, and what was skipped."""

    batch: UpdateBatch

    @property
    def n_usable(self) -> int:
        return len(self.batch)


def concat_batches(batches: list[UpdateBatch]) -> UpdateBatch:
    """One batch holding ``batches`` in order."""
    return _batch(
        [i for b in batches for i in b.item_ids],
        {
            name: np.concatenate([getattr(b, name) for b in batches]) if batches else np.empty(0)
            for name in _COLUMNS
        },
        [g for b in batches for g in b.groups],
        [e for b in batches for e in b.event_ids],
    )


def _batch(
    ids: list[str], cols: dict[str, Any], groups: list[str | None], events: list[str | None]
) -> UpdateBatch:
    return UpdateBatch.from_columns(ids, stock=cols["stock"], min_=cols["min"], max_=cols["max"], price=cols["price"],
                                    occurred_at=cols["occurred_at"], groups=groups, event_ids=events)  # fmt: skip


def collect_updates(
    docs: Iterable[Mapping[str, Any]],
    *,
    chunk_size: int = 5000,
    group_field: str = "category",
    exclude_ids: frozenset[str] | set[str] = frozenset(),
    progress_every: int = 100_000,
    on_chunk: Callable[[int], None] | None = None,
) -> UpdateSnapshot:
    """Stream ``docs`` into an :class:`UpdateSnapshot` (see the module docstring)."""
    started = time.monotonic()
    counts = DocCounts()
    parts: list[UpdateBatch] = []
    next_log = progress_every

    def invalid(doc: Mapping[str, Any], reason: str) -> None:
        counts.invalid += 1
        if len(counts.examples) < MAX_EXAMPLES:
            counts.examples.append(f"{doc.get('_id', '?')}: {reason}")

    for chunk in chunked(docs, chunk_size):
        counts.read += len(chunk)
        batch, rejects = parse_updates(chunk, group_field=group_field)
        for index, reason in rejects:
            invalid(chunk[index], reason)
        bad = {index for index, _ in rejects}
        rows = [k for k in range(len(chunk)) if k not in bad]  # batch row -> chunk index
        keep = np.ones(len(batch), dtype=bool)
        for j, item_id in enumerate(batch.item_ids):
            missing = [
                n for n, col in zip(_NAMES, _NUMBERS, strict=True) if math.isnan(getattr(batch, col)[j])
            ]
            if missing:
                keep[j] = False
                invalid(chunk[rows[j]], f"missing_field: {', '.join(missing)}")
            elif item_id in exclude_ids:
                keep[j] = False
                counts.excluded += 1
        parts.append(batch if keep.all() else batch.rows(np.flatnonzero(keep).tolist()))
        if counts.read >= next_log:
            log.info("snapshot progress: %d documents read, %d invalid, %d excluded",
                     counts.read, counts.invalid, counts.excluded)  # fmt: skip
            next_log = counts.read + progress_every
        if on_chunk is not None:
            on_chunk(counts.read)
    return UpdateSnapshot(batch=concat_batches(parts), **counts.fields(started))
