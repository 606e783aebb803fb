"""A streamed Mongo snapshot as numpy feature columns, with bounded memory.

Documents arrive from a cursor in batches (``WorkerMongo.iter_inventory``: a projection of the
fields the features need and a bounded ``batch_size``). Each chunk of ``chunk_size`` documents is
validated with :func:`detection.parse_item` and turned into a (k, 7) float64 block at once, so no
list of dicts or pydantic objects ever holds the whole snapshot: memory is the final
``n x 7`` matrix (56 bytes per item) plus one chunk. Invalid documents are counted (with a few
example reasons) and skipped; documents whose ``item_id`` is in ``exclude_ids`` (items the
consumer currently flags) are left out and counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from consumer.chunks import chunked
from detection import FEATURE_NAMES, ItemValidationError, StockItem, feature_matrix, parse_item

__all__ = ["DocCounts", "Snapshot", "SnapshotCounts", "collect", "iter_item_chunks"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
MAX_EXAMPLES = 5


@dataclass(slots=True, kw_only=True)
class SnapshotCounts:
    """What a streamed snapshot read and skipped; subclasses say what they hold."""

    n_read: int = 0
    n_invalid: int = 0
    n_excluded: int = 0
    invalid_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_usable(self) -> int:
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts for status events and the registry."""
        return {
            "read": self.n_read,
            "usable": self.n_usable,
            "invalid": self.n_invalid,
            "excluded_flagged": self.n_excluded,
            "invalid_examples": list(self.invalid_examples),
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True, kw_only=True)
class Snapshot(SnapshotCounts):
    """Feature matrix of the usable documents plus the counts of what was skipped."""

    features: FloatArray

    @property
    def n_usable(self) -> int:
        return int(self.features.shape[0])

    def sample(self, size: int, *, seed: int = 0) -> FloatArray:
        """Up to ``size`` rows drawn uniformly without replacement (the gate's recent sample)."""
        n = self.n_usable
        if n <= size:
            return self.features
        idx = np.random.default_rng(seed).choice(n, size=size, replace=False)
        return self.features[np.sort(idx)]


@dataclass(slots=True)
class DocCounts:
    """Documents read, invalid (with a few example reasons) and excluded."""

    read: int = 0
    invalid: int = 0
    excluded: int = 0
    examples: list[str] = field(default_factory=list)

    def fields(self, started: float) -> dict[str, Any]:
        """The :class:`SnapshotCounts` fields of a snapshot streamed since ``started`` (monotonic)."""
        return {"n_read": self.read, "n_invalid": self.invalid, "n_excluded": self.excluded,
                "invalid_examples": self.examples, "seconds": time.monotonic() - started}  # fmt: skip


def iter_item_chunks(
    docs: Iterable[Mapping[str, Any]],
    *,
    chunk_size: int,
    require_id: bool,
    exclude_ids: frozenset[str] | set[str] = frozenset(),
    counts: DocCounts | None = None,
) -> Iterator[list[StockItem]]:
    """Valid items in chunks of at most ``chunk_size``; invalid/excluded documents are counted."""
    counts = counts if counts is not None else DocCounts()
    return chunked(
        _valid_items(docs, require_id=require_id, exclude_ids=exclude_ids, counts=counts), chunk_size
    )


def _valid_items(
    docs: Iterable[Mapping[str, Any]],
    *,
    require_id: bool,
    exclude_ids: frozenset[str] | set[str],
    counts: DocCounts,
) -> Iterator[StockItem]:
    for doc in docs:
        counts.read += 1
        try:
            item = parse_item(doc, require_id=require_id)
        except ItemValidationError as exc:
            counts.invalid += 1
            if len(counts.examples) < MAX_EXAMPLES:
                counts.examples.append(f"{doc.get('_id', '?')}: {exc.reason}")
            continue
        if exclude_ids and item.item_id is not None and item.item_id in exclude_ids:
            counts.excluded += 1
            continue
        yield item


def collect(
    docs: Iterable[Mapping[str, Any]],
    *,
    chunk_size: int = 5000,
    exclude_ids: frozenset[str] | set[str] = frozenset(),
    expected: int | None = None,
    progress_every: int = 100_000,
    on_chunk: Callable[[int], None] | None = None,
) -> Snapshot:
    """Stream ``docs`` into a :class:`Snapshot` (see the module docstring).

    ``on_chunk(n_read)`` is called after each chunk (tests use it to inject faults mid-stream).
    """
    started = time.monotonic()
    counts = DocCounts()
    blocks: list[FloatArray] = []
    next_log = progress_every
    for chunk in iter_item_chunks(
        docs, chunk_size=chunk_size, require_id=False, exclude_ids=exclude_ids, counts=counts
    ):
        blocks.append(feature_matrix(chunk))
        if counts.read >= next_log:
            total = f"/~{expected}" if expected else ""
            log.info(
                "snapshot progress: %d%s documents read, %d invalid, %d excluded",
                counts.read,
                total,
                counts.invalid,
                counts.excluded,
            )
            next_log = counts.read + progress_every
        if on_chunk is not None:
            on_chunk(counts.read)
    features = np.concatenate(blocks) if blocks else np.empty((0, len(FEATURE_NAMES)), dtype=np.float64)
    return Snapshot(features=features, **counts.fields(started))
