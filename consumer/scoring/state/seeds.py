"""Where an item the state has never seen starts: the inventory snapshot the retrain worker reads.

Two ways to reach it (``STATE_SEED``), chosen by measurement (docs/consume.md § Per-item state):

* :class:`SnapshotSeeds` (``snapshot``, the default): one pass over the inventory at start-up,
  kept as 44-byte rows (the four numbers, ``occurred_at`` and the peer group) in the same numpy
  hash index as the state (~76 bytes per item). FerretDB v1 evaluates ``$in`` by scanning the whole
  collection (1.1 s per query on 20k documents, whatever the list length), so a per-batch lookup
  would cost a full scan per batch; one scan at start costs it once.
* :class:`LookupSeeds` (``lookup``): one ``$in`` query per batch for the batch's unknown ids, for
  a MongoDB whose ``_id``/``item_id`` index answers it.

Retirement (issue 11: state + seed <= 200 bytes per item): an item's seed row is dead once its state
is durable in the changelog (:meth:`Seeds.retire`, called by the state store: a flush acknowledged,
a transaction committed, a partition restored), since from then on the item is found in the state
table or restored from the changelog. :class:`BackgroundSeeds` drops those rows and repacks its
table when half of it is dead; when items may start from the inventory again (a fresh start,
changes read again: :meth:`Seeds.invalidate`) it reloads the inventory if it retired anything.
Items of partitions this member never owns are never retired (the seed holds the whole inventory).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

import numpy as np

from consumer.ports import InventoryLookup, MongoUnavailableError
from consumer.scoring.state.item_ids import Hashes
from consumer.scoring.state.table import PartitionTable
from detection import UpdateBatch, parse_updates

__all__ = ["SEED_DTYPE", "BackgroundSeeds", "LookupSeeds", "Seeds", "SnapshotSeeds"]

log = logging.getLogger(__name__)

SEED_DTYPE: Final = np.dtype(
    [
        ("stock", "<f8"),
        ("min", "<f8"),
        ("max", "<f8"),
        ("price", "<f8"),
        ("occurred_at", "<f8"),
        ("group", "<u4"),
    ]
)
_CHUNK: Final = 50_000


class Seeds(Protocol):
    """The snapshot rows (as an update batch) of those of ``item_ids`` the inventory holds."""

    def prepare(self, group_field: str, tick: Callable[[], None]) -> None: ...
    def seed(self, item_ids: Sequence[str]) -> UpdateBatch: ...
    def retire(self, hashes: Hashes) -> None:
        """These items' states are durable (by their :func:`.item_ids.id_hashes`): never seeded again."""

    def invalidate(self) -> None:
        """Items may start from the inventory again: what was retired must be seeded again."""


class LookupSeeds:
    """One inventory query per batch (``$in`` on the ids)."""

    def __init__(self, lookup: InventoryLookup) -> None:
        self._lookup = lookup
        self._group_field = "category"

    def prepare(self, group_field: str, tick: Callable[[], None]) -> None:
        self._group_field = group_field

    def retire(self, hashes: Hashes) -> None:
        return None  # nothing kept: nothing to drop

    def invalidate(self) -> None:
        return None

    def seed(self, item_ids: Sequence[str]) -> UpdateBatch:
        docs = self._lookup.find_items(item_ids, fields=(self._group_field, "occurred_at"))
        return parse_updates(docs, group_field=self._group_field)[0]


class SnapshotSeeds:
    """The whole inventory, loaded once, in compact rows.

    ``retiring``: :meth:`retire` drops rows (else it does nothing: a snapshot alone cannot reload
    what it dropped, :class:`BackgroundSeeds` can).
    """

    def __init__(
        self, docs: Iterable[Mapping[str, Any]], *, group_field: str = "category", retiring: bool = False
    ) -> None:
        started = time.perf_counter()
        self._retiring = retiring
        self.retired = 0  # rows dropped since the load
        self._dead = 0  # dropped rows the table still has (until its next repack)
        self._groups: list[str | None] = [None]
        codes: dict[str | None, int] = {None: 0}
        self._table = PartitionTable(dtype=SEED_DTYPE, keep_ids=False)
        chunk: list[Mapping[str, Any]] = []
        seen = 0
        for doc in docs:
            chunk.append(doc)
            if len(chunk) >= _CHUNK:
                seen += self._add(chunk, group_field, codes)
                chunk = []
        seen += self._add(chunk, group_field, codes)
        self._table.compact()
        self.seconds = time.perf_counter() - started
        log.info(
            "loaded the inventory seed: %d items from %d documents in %.1fs", len(self), seen, self.seconds
        )

    def __len__(self) -> int:
        return len(self._table)

    def prepare(self, group_field: str, tick: Callable[[], None]) -> None:
        return None

    def retire(self, hashes: Hashes) -> None:
        """Drop these items' rows; repack the table once half of its rows are dropped ones."""
        if not self._retiring:
            return
        dropped = self._table.drop(*hashes)
        self.retired += dropped
        self._dead += dropped
        if self._dead and 2 * self._dead >= self._table.rows:
            self._table.repack()  # O(live rows), amortised: each repack at least halves the table
            self._dead = 0

    def invalidate(self) -> None:
        return None  # reloading is :class:`BackgroundSeeds`'s

    @property
    def nbytes(self) -> int:
        return self._table.nbytes

    def _add(self, docs: list[Mapping[str, Any]], group_field: str, codes: dict[str | None, int]) -> int:
        batch, _ = parse_updates(docs, group_field=group_field)
        last = {item: k for k, item in enumerate(batch.item_ids)}  # a later document of an id wins
        idx = np.fromiter(last.values(), dtype=np.intp, count=len(last))
        rows = np.zeros(idx.size, SEED_DTYPE)
        for name, column in (("stock", batch.stock), ("min", batch.min), ("max", batch.max),
                             ("price", batch.price), ("occurred_at", batch.occurred_at)):  # fmt: skip
            rows[name] = column[idx]
        for j, k in enumerate(idx.tolist()):
            group = batch.groups[k]
            if group not in codes:
                codes[group] = len(self._groups)
                self._groups.append(group)
            rows["group"][j] = codes[group]
        self._table.put(list(last), rows, np.full(idx.size, -1, np.int64))
        return len(docs)

    def seed(self, item_ids: Sequence[str]) -> UpdateBatch:
        rows = self._table.lookup(item_ids)
        held = np.flatnonzero(rows >= 0)
        got, _ = self._table.get(rows[held])
        return UpdateBatch.from_columns(
            [item_ids[i] for i in held.tolist()],
            stock=got["stock"],
            min_=got["min"],
            max_=got["max"],
            price=got["price"],
            occurred_at=got["occurred_at"],
            groups=[self._groups[g] for g in got["group"].tolist()],
        )


class BackgroundSeeds:
    """A :class:`SnapshotSeeds` loaded by a thread, started by the first batch that needs it.

    :meth:`prepare` waits for the load while calling ``tick`` every second (so /healthz stays
    alive); a failed load raises :class:`MongoUnavailableError` and is started again next time.
    """

    def __init__(self, docs: Callable[[str], Iterable[Mapping[str, Any]]]) -> None:
        self._docs = docs
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._seeds: SnapshotSeeds | None = None
        self._error: BaseException | None = None
        self._group_field = "category"
        self._later: list[Hashes] = []  # retired while (re)loading: dropped once loaded
        self._lock = threading.Lock()  # a load publishes only while it is the current one

    def prepare(self, group_field: str, tick: Callable[[], None]) -> None:
        if self._seeds is not None and group_field == self._group_field:
            self._retire_later()
            return
        if self._thread is None or group_field != self._group_field:
            if group_field != self._group_field:
                self._later = []  # states of another grouping: their partitions start afresh
            with self._lock:  # an older load still running (its wait interrupted) publishes nothing now
                self._group_field, self._seeds, self._error = group_field, None, None
                self._done.clear()
                self._thread = threading.Thread(
                    target=self._load, args=(group_field,), name="stockwatch-seed", daemon=True
                )
            self._thread.start()
        while not self._done.wait(1.0):
            tick()
        if self._error is not None:
            error, self._error, self._thread = self._error, None, None
            raise MongoUnavailableError(f"could not load the inventory seed: {error}") from error
        self._retire_later()

    def retire(self, hashes: Hashes) -> None:
        if self._seeds is not None:
            self._seeds.retire(hashes)
        else:  # (re)loading: dropped from the new load
            self._later.append(hashes)

    def _retire_later(self) -> None:
        if self._later and self._seeds is not None:
            later, self._later = self._later, []
            for hashes in later:
                self._seeds.retire(hashes)

    @property
    def retired(self) -> int:
        """Items retired from the loaded inventory (0 while loading)."""
        return self._seeds.retired if self._seeds is not None else 0

    def invalidate(self) -> None:
        """Reload the inventory at the next :meth:`prepare` if rows were retired (dropped now)."""
        self._later = []  # some of them may start from the seed again
        if self._seeds is not None and self._seeds.retired:
            log.info("reloading the inventory seed: %d retired items may start from it again",
                     self._seeds.retired)  # fmt: skip
            self._seeds, self._thread = None, None

    def _load(self, group_field: str) -> None:
        seeds, error = None, None
        try:
            seeds = SnapshotSeeds(self._docs(group_field), group_field=group_field, retiring=True)
        except Exception as exc:  # handed to the loop, which retries with backoff
            error = exc
        finally:
            with self._lock:
                if threading.current_thread() is self._thread:  # else superseded: another field's load
                    self._seeds, self._error = seeds, error
                    self._done.set()

    def seed(self, item_ids: Sequence[str]) -> UpdateBatch:
        if self._seeds is None:
            raise MongoUnavailableError("the inventory seed is not loaded")
        return self._seeds.seed(item_ids)
