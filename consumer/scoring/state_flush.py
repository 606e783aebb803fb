"""At-least-once: the state's cached changelog records written before offsets are committed.

:class:`StateFlush` takes the store's cache (:mod:`.state.cache`) and publishes it; the
:class:`~consumer.scoring.commits.Committer` commits the offsets acknowledged at that moment only
once the flush is acknowledged. A periodic commit does not wait: the flush is started and its
offsets committed on a later tick when it is acknowledged (scoring goes on meanwhile; changes
acknowledged since wait for the next flush). Idle, revocation and shutdown wait for it.

A flush not acknowledged is given back to the cache (written again by the next one), except the
partitions revoked meanwhile: their next owner restores what was committed, and a record given
back would follow newer ones in the changelog.
"""

from __future__ import annotations

import logging
from typing import Any

from consumer.ports import Delivery, DeliveryError, OutputRecord, Sink, Source
from consumer.scoring.metrics import ConsumerMetrics
from consumer.scoring.state.cache import Chunk, Taken
from consumer.scoring.state.changelog import lineage_record
from consumer.scoring.state.rolling import Slice
from consumer.scoring.state.store import StateStore
from consumer.scoring.state.writes import truncate_cycles, write_partition

__all__ = ["StateFlush"]

log = logging.getLogger(__name__)


class StateFlush:
    """One flush of the changelog cache at a time (see the module docstring)."""

    def __init__(self, store: StateStore, sink: Sink, source: Source, metrics: ConsumerMetrics) -> None:
        self.store = store
        self.sink = sink
        self.source = source
        self.metrics = metrics
        self._pending: tuple[Taken, Delivery | None, BaseException | None, dict[int, Any]] | None = None
        self._slices: list[Slice] = []  # the rewrite slices of the flush in flight

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def start(self) -> None:
        """Publish what the cache holds (nothing to do if it is empty or a flush is in flight)."""
        cache = self.store.cache
        if self._pending is not None or cache is None or not len(cache):
            return
        truncate_cycles(self.store)  # the previous flush's offsets are committed by now (or not yet)
        self._slices = []
        taken = cache.take(self._records)
        owned = {p: self.store.table(p) for p in self.store.owned}  # the tables the records are of
        try:
            self._pending = (taken, self.sink.publish(taken.records, {}, self.source), None, owned)
        except DeliveryError as exc:
            self._pending = (taken, None, exc, owned)

    def _records(self, partition: int, chunk: Chunk) -> list[OutputRecord]:
        """A partition's records: rewrite slice and changes (:mod:`.state.writes`), then its lineage."""
        topic = self.store.changelog.topic
        records, piece = write_partition(self.store, topic, partition, chunk, acked_only=True)
        if piece is not None:
            self._slices.append(piece)
        after = self.store.after.get(partition)
        if after is not None:  # the latest lineage stays above any truncation point
            records.append(lineage_record(topic, partition, self.store.lineage(after)))
        return records

    def committed(self) -> None:
        """Offsets were committed: a rewrite cycle whose records they cover can be truncated now
        (not only at the next flush, which an idle stream never starts)."""
        truncate_cycles(self.store)

    def done(self, *, block: bool) -> bool | None:
        """The flush in flight: True acknowledged (or none), False failed (given back), None not yet."""
        if self._pending is None:
            return True
        taken, delivery, error, owned = self._pending
        if delivery is not None:
            if not delivery.done():
                if not block:
                    return None
                delivery.wait()
            error = delivery.error()
        self._pending = None
        if error is None:
            self.metrics.state_flushed.inc(taken.items)
            self.store.slices_acked(self._slices)
            for p, (ids, _, _) in taken.chunks.items():  # of a table still owned: the seed drops them
                if p in self.store.owned and self.store.table(p) is owned.get(p):
                    self.store.durable(ids)
            return True
        self.store.slices_failed(self._slices)
        cache = self.store.cache
        if cache is not None:
            still = {
                p for p, table in owned.items() if p in self.store.owned and self.store.table(p) is table
            }
            cache.give_back(Taken([], {p: c for p, c in taken.chunks.items() if p in still}, 0, 0))
        log.warning(
            "state changelog records not acknowledged (%r); offsets are committed after they are", error
        )
        return False

    def now(self) -> bool:
        """Wait for the flush in flight, then flush the rest and wait: True when all is acknowledged."""
        if self.done(block=True) is False:
            return False
        self.start()
        return self.done(block=True) is not False
