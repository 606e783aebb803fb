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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast, overload

import numpy as np
import numpy.typing as npt

from detection import FEATURE_NAMES, ItemValidationError, StockItem, feature_matrix, parse_item

__all__ = ["ColumnItems", "DocCounts", "Snapshot", "collect", "iter_item_chunks"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
MAX_EXAMPLES = 5


@dataclass(slots=True)
class Snapshot:
    """Feature matrix of the usable documents plus the counts of what was skipped."""

    features: FloatArray
    n_read: int = 0
    n_invalid: int = 0
    n_excluded: int = 0
    invalid_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

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


@dataclass(slots=True)
class DocCounts:
    """Documents read, invalid (with a few example reasons) and excluded."""

    read: int = 0
    invalid: int = 0
    excluded: int = 0
    examples: list[str] = field(default_factory=list)


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
    chunk: list[StockItem] = []
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
        chunk.append(item)
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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
    return Snapshot(
        features=features,
        n_read=counts.read,
        n_invalid=counts.invalid,
        n_excluded=counts.excluded,
        invalid_examples=counts.examples,
        seconds=time.monotonic() - started,
    )


class _Row:
    """The four raw numbers of one row, read by ``detection.feature_matrix`` like a StockItem."""

    __slots__ = ("max_stock_level", "min_stock_level", "price", "stock_quantity")

    def __init__(self, stock: float, lo: float, hi: float, price: float) -> None:
        self.stock_quantity, self.min_stock_level, self.max_stock_level, self.price = stock, lo, hi, price


class ColumnItems(Sequence[StockItem]):
    """A feature matrix seen as the item sequence ``detection.train_model`` takes.

    ``train_model`` only reads the four raw numbers (through ``feature_matrix``); the raw values
    are features 0, 5, 6 and 4, so rows are rebuilt lazily as light slot objects instead of
    materialising one pydantic object per item. (A ``train_model`` that takes a feature matrix
    would make this adapter unnecessary.)
    """

    _BLOCK = 16_384

    def __init__(self, features: FloatArray) -> None:
        self._raw = features[:, (0, 5, 6, 4)]  # stock, min, max, price: 32 bytes per row
        self._n = int(features.shape[0])

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> StockItem: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[StockItem]: ...
    def __getitem__(self, index: int | slice) -> StockItem | Sequence[StockItem]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._n))]
        s, lo, hi, p = self._raw[index].tolist()
        return cast(StockItem, _Row(s, lo, hi, p))

    def __iter__(self) -> Iterator[StockItem]:
        for start in range(0, self._n, self._BLOCK):  # Python floats for one block at a time only
            for s, lo, hi, p in self._raw[start : start + self._BLOCK].tolist():
                yield cast(StockItem, _Row(s, lo, hi, p))
