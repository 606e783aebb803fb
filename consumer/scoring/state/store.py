"""The per-item state of `stockwatch consume`: one table per owned input partition, changelog-backed.

Kafka Streams' idiom: the input is keyed by item id, so the member that owns a partition owns
its items' state. :meth:`StateStore.assign` restores a partition's table from its changelog
partition (read to its end) before any of its records is decided; :meth:`StateStore.revoke`
drops it. A batch's changes are applied when its outputs (changelog records included) are
handed to the sink (:meth:`apply`, so the next batch sees them while this one is in flight) and
kept undoable until the batch is acknowledged (:meth:`settled`); a rewind undoes every batch
not yet acknowledged (:meth:`rollback`), so the re-read records meet the state they met before.

A partition's state covers an unbroken run of `default` decisions under one group field: after
the seed model decided some of its updates (:meth:`mark_stale`, or the changelog's lineage record
behind the committed offset) or under another group field, :meth:`assign` starts it afresh (its
items start from the inventory seed) and the partition's next batch writes the fresh-start mark
first (:meth:`take_resets`; again after a rewind of that batch), voiding every earlier record.

The seed drops items whose state is durable (``retire``: :meth:`durable`, :meth:`assign`) and is
reloaded (``reseed``) when a restore starts items from it again (:mod:`.seeds`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from consumer.ports import StateChangelog
from consumer.scoring.state.changelog import Lineage, decode
from consumer.scoring.state.changes import Restore, StagedChanges, Undo
from consumer.scoring.state.item_ids import Hashes, distinct, id_hashes
from consumer.scoring.state.record import ITEM_DTYPE, byte_rows
from consumer.scoring.state.rolling import RollingRewrite, Slice
from consumer.scoring.state.table import ABSENT, PartitionTable
from consumer.scoring.state.truncation import Truncator

if TYPE_CHECKING:
    from consumer.scoring.state.batch_keys import BatchKeys
    from consumer.scoring.state.cache import ChangelogCache

__all__ = ["Restore", "StagedChanges", "StateStore", "Undo"]

log = logging.getLogger(__name__)

Records = npt.NDArray[np.void]


class StateStore:
    """Tables of the owned partitions, restored from and logged to the changelog."""

    def __init__(self, changelog: StateChangelog) -> None:
        self.changelog = changelog
        self._tables: dict[int, PartitionTable] = {}
        self._undo: deque[tuple[int, Undo]] = deque()
        self._token = 0
        self.restores: deque[Restore] = deque(maxlen=64)  # the latest, for logs and tests
        self.on_change: Callable[[int, Restore | None], None] = lambda _owned, _restore: None  # metrics
        self.group_field: str | None = None  # the peer-group field the owned tables' codes are of
        self._resets: set[int] = set()  # partitions started afresh whose mark is not written yet
        self._marked: deque[tuple[int, set[int]]] = deque()  # (batch token, marks it carries) unacked
        self._stale: set[int] = set()  # partitions the seed model decided since their state was kept
        self._restored: set[int] = set()  # partitions restored at least once by this process
        self.cache: ChangelogCache | None = None  # at-least-once: changelog records wait for the commit
        self.rolling: RollingRewrite | None = RollingRewrite()  # None: the topic refuses truncation
        self.truncator = Truncator(changelog)
        self.committed_offset: Callable[[int], int | None] = lambda _p: None  # the group's, per partition
        self._slices: deque[tuple[int, list[Slice]]] = deque()  # (batch token, its slices) unacked
        self.after: dict[int, int] = {}  # per partition: the input offset decided up to (for lineage)
        self.retire: Callable[[Hashes], None] | None = None  # the seed drops durable items (if wired)
        self.reseed: Callable[[], None] = lambda: None  # items may start from the seed again

    @property
    def owned(self) -> set[int]:
        return set(self._tables)

    def __len__(self) -> int:
        """Items held over all owned partitions."""
        return sum(map(len, self._tables.values()))

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._tables.values())

    def table(self, partition: int) -> PartitionTable:
        return self._tables[partition]

    # ------------------------------------------------------------------ assignment

    def assign(
        self,
        partition: int,
        *,
        resume_offset: int,
        tick: Callable[[], None] = lambda: None,
        committed: int | None = None,
    ) -> Restore:
        """Restore ``partition`` from the changelog; records are decided from ``resume_offset`` on.

        Changes logged for inputs at or after ``resume_offset`` are ignored: those inputs are
        read (and their changes made) again. ``committed`` (the group's committed offset, when
        known) tells whether inputs were decided without the state since it was logged.
        """
        started = time.perf_counter()
        keys, values = self.changelog.read(partition, tick=tick)
        restored = decode(keys, values, committed=resume_offset)
        if restored.refused:
            log.warning(
                "%d packed records of %s[%d] could not be read (damaged, or of a later version): "
                "their item states are ignored",
                restored.refused,
                self.changelog.topic,
                partition,
            )
        reset = self._stale_because(partition, restored.lineage, committed)
        if reset:
            restored = decode(keys, values, committed=resume_offset, fresh=True)
            self._resets.add(partition)
        table = PartitionTable(capacity=len(restored.item_ids))  # a little more than needed if items repeat
        table.load(restored.item_ids, restored.records, restored.offsets, void=restored.void)
        if restored.dropped:  # the count only: a forged record's bytes stay out of the log
            log.warning(
                "%d item states of %s[%d] are not states StockWatch writes (non-finite or out-of-range "
                "numbers: damaged or forged): dropped, their items start from the inventory seed",
                restored.dropped,
                self.changelog.topic,
                partition,
            )
        self._tables[partition] = table
        self._stale.discard(partition)
        # a partition first seen with an empty changelog may be new (input partitions added): items
        # whose state is durable on their old partition start there from the seed
        new = not restored.read and partition not in self._restored
        self._restored.add(partition)
        left_out = restored.uncommitted or restored.voided or restored.void is not None or restored.refused
        if reset or new or left_out:
            self.reseed()  # items whose state is left out start from the seed: it may have retired them
        if len(table) and self.retire is not None:
            self.retire(table.hashes())  # in the changelog below the committed offset: durable
        if self.rolling is not None:  # its first cycle starts at the end (read off the loop thread)
            self.truncator.request(partition, self.rolling.wait(partition), None)
        seconds = time.perf_counter() - started
        done = Restore(
            partition, len(table), restored.read, restored.ignored, seconds, reset, restored.dropped
        )
        self.restores.append(done)
        self.on_change(len(self._tables), done)
        if reset:
            log.warning(
                "started the state of partition %d afresh at input offset %d (%s); its items start "
                "from the inventory seed",
                partition,
                resume_offset,
                reset,
            )
            return done
        log.info(
            "restored the state of partition %d from %s: %d items from %d records (%d ignored) in %.2fs",
            partition,
            self.changelog.topic,
            done.items,
            done.read,
            done.ignored,
            done.seconds,
        )
        return done

    def _stale_because(self, partition: int, lineage: Lineage | None, committed: int | None) -> str:
        """Why the logged state of ``partition`` must not be used ("" when it may)."""
        if partition in self._stale:
            return "the seed model decided some of its updates meanwhile"
        if lineage is None:  # an empty changelog, or one written before lineage records
            return ""
        if self.group_field is not None and lineage.group_field != self.group_field:
            return f"its state groups peers by {lineage.group_field!r}, the model by {self.group_field!r}"
        if committed is not None and lineage.after < committed:
            return f"inputs from offset {lineage.after} to {committed - 1} were decided without it"
        return ""

    def lineage(self, after: int) -> Lineage:
        """The lineage record of a partition after a batch that decided its inputs up to ``after``."""
        return Lineage(self.group_field or "", after)

    def take_resets(self, partitions: Iterable[int]) -> set[int]:
        """Which of ``partitions`` the next batch must mark as started afresh (taken: a rewind of
        that batch gives them back, see :meth:`apply`)."""
        taken = self._resets & set(partitions)
        self._resets -= taken
        return taken

    def mark_stale(self, partitions: Iterable[int]) -> None:
        """The seed model decided updates of ``partitions``: their state no longer follows them."""
        stale = set(partitions)
        self.revoke(stale & self.owned)
        self._stale |= stale

    def regroup(self, group_field: str) -> None:
        """The model groups peers by ``group_field``: tables of another field are dropped (and
        started afresh when restored: the lineage names the old field)."""
        if self.group_field not in (None, group_field):
            log.warning(
                "the model groups peers by %r, the state by %r: its partitions start afresh",
                group_field,
                self.group_field,
            )
            self.revoke(self.owned)
        self.group_field = group_field

    def keep_stale(self, partitions: Iterable[int]) -> None:
        """Forget the staleness of partitions no longer assigned (their next owner checks the lineage)."""
        self._stale &= set(partitions)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget ``partitions`` (their next owner restores them from the changelog)."""
        partitions = list(partitions)
        if self.cache is not None:
            self.cache.drop(partitions)
        for p in partitions:
            self._resets.discard(p)  # its next owner decides again whether it starts afresh
            if self.rolling is not None:
                self.rolling.drop(p)
            self.after.pop(p, None)
            if self._tables.pop(p, None) is not None:
                log.info("dropped the state of partition %d (revoked)", p)
                self.on_change(len(self._tables), None)
            for _, undo in self._undo:
                undo.pop(p, None)

    # ------------------------------------------------------------------ batches

    def prior(
        self, partitions: Sequence[int], item_ids: Sequence[str], keys: BatchKeys | None = None
    ) -> tuple[Records, npt.NDArray[np.int64]]:
        """The record and last applied input offset of each (partition, id); offset ABSENT = unknown.

        ``keys`` (of ``item_ids``): its deduplication is reused, and each update's row is kept in it.
        """
        n = len(item_ids)
        if n and partitions[0] == partitions[-1] and partitions.count(partitions[0]) == n:
            table = self._tables[partitions[0]]  # the usual batch: one partition
            uniq, u = (keys.ids, keys.u) if keys is not None else distinct(item_ids)
            found = table.find(uniq, keys.hashes if keys is not None else None)[u]
            if keys is not None:
                keys.rows, keys.tables = found, {partitions[0]: table}
            return table.gather(found)
        records = np.zeros(n, ITEM_DTYPE)
        offsets = np.full(n, ABSENT, np.int64)
        rows = np.full(n, -1, np.intp)
        tables = {}
        parts = np.asarray(partitions, dtype=np.int64)
        for p in np.unique(parts).tolist():
            at = np.flatnonzero(parts == p)
            tables[p] = table = self._tables[p]
            ids = [item_ids[i] for i in at.tolist()]
            uniq, u = distinct(ids)
            rows[at] = found = table.find(uniq)[u]
            got, off = table.gather(found)
            byte_rows(records)[at] = byte_rows(got)
            offsets[at] = off
        if keys is not None:
            keys.rows, keys.tables = rows, tables
        return records, offsets

    def apply(self, changes: StagedChanges) -> int:
        """Apply a batch's changes (handed to the sink); returns its token for :meth:`settled`."""
        self._token += 1
        undo: Undo = {}
        for p, (ids, records, offsets) in changes.by_partition.items():
            if (table := self._tables.get(p)) is not None and ids:
                seen, rows = changes.rows.get(p, (None, None))  # rows of a table: that one's only
                hint = rows if seen is table and rows is not None and rows.size == len(ids) else None
                before, put = table.put_rows(ids, records, offsets, rows=hint)
                undo[p], changes.rows[p] = (ids, *before, put), (table, put)
        self._undo.append((self._token, undo))
        if changes.slices:
            self._slices.append((self._token, changes.slices))
        if changes.resets:
            self._marked.append((self._token, set(changes.resets)))
        return self._token

    def durable(self, item_ids: Sequence[str]) -> None:
        """These items' states are durable in the changelog (never earlier: a rollback meets the seed)."""
        if item_ids and self.retire is not None:  # no seed to retire from: no hashing either
            self.retire(id_hashes(item_ids))

    def settled(self, token: int) -> None:
        """The batch of ``token`` (and every earlier one) is acknowledged: no longer undoable."""
        while self._undo and self._undo[0][0] <= token:
            self._undo.popleft()
        while self._marked and self._marked[0][0] <= token:
            self._marked.popleft()
        while self._slices and self._slices[0][0] <= token:
            self.slices_acked(self._slices.popleft()[1])

    def rollback(self) -> int:
        """Undo every batch not acknowledged yet, newest first; returns how many."""
        undone = len(self._undo)
        while self._undo:
            _, undo = self._undo.pop()
            for p, (ids, records, offsets, rows) in undo.items():
                if p in self._tables:  # the table the batch was put in (a revoke drops its undo)
                    self._tables[p].put(ids, records, offsets, rows=rows)
        while self._slices:
            self.slices_failed(self._slices.pop()[1])
        if self.rolling is not None:  # and slices of batches that never reached apply()
            self.rolling.rewind()
        while self._marked:  # their fresh-start marks may not have landed: the retry writes them again
            self._resets |= self._marked.pop()[1] & self.owned
        if undone:
            log.info("rolled back the state changes of %d unacknowledged batch(es)", undone)
        return undone

    # ------------------------------------------------------------------ the bounded log (rolling.py)

    def in_flight(self) -> list[Undo]:
        """What each batch not acknowledged yet overwrote (oldest first): see :mod:`.writes`."""
        return [undo for _, undo in self._undo]

    def slices_acked(self, slices: list[Slice]) -> None:
        if self.rolling is not None:
            self.rolling.acked(slices)

    def slices_failed(self, slices: list[Slice]) -> None:
        if self.rolling is not None:
            self.rolling.failed(slices)

    def close(self) -> None:
        self.truncator.close()
        self.changelog.close()
