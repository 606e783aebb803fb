"""One poll batch through the ``default`` change detector: updates judged against their item's history.

Pure apart from the two collaborators it is handed (the :class:`StateStore` of the owned
partitions, and optionally the inventory lookup that seeds unknown items):

1. scan the records into columns when every one is a plain update, else decode them (the seed
   path's decoder) and parse them as partial updates (:func:`detection.parse_updates`): the same
   updates either way (:mod:`.update_decode`); an update that fails validation is a dead letter
   (``invalid_item``);
2. gather each update's prior state from its partition's table; an update whose input offset is
   not after the offset its item's state was last changed by is a *replay* of an update already
   applied (see :func:`split_replays`): it is neither decided nor applied again;
3. items no table holds start from the inventory snapshot's state (:mod:`.state.seeds`); items
   nowhere are new (their first update must be complete);
4. ``detector.decide_batch`` on the batch's prior states; an unknown item's incomplete update is a
   dead letter ``missing_field``; anomaly (and decision) events; the changed items' states in packed changelog records, per changed
   item (its new record and the offset of its last update in the batch), to the changelog
   partition of its input partition (exactly-once; at-least-once the store's cache writes them at
   the next offset commit, :mod:`.state.cache`). The state changes travel in the result (``state``): the loop
   applies them to the tables when the outputs are handed to the sink.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from consumer.ports import KafkaUnavailableError, OutputRecord, SourceRecord, TopicPart
from consumer.scoring.batch import BatchConfig, BatchResult, dead_letters
from consumer.scoring.change_events import EventInputs, change_events
from consumer.scoring.episode_batch import EpisodeContext, track_episodes
from consumer.scoring.future_time import drop_future
from consumer.scoring.state.batch_items import prior_states, staged_changes
from consumer.scoring.state.batch_keys import BatchKeys
from consumer.scoring.state.item_ids import Hashes
from consumer.scoring.state.record import episodes_of, join, states_of
from consumer.scoring.state.seeds import Seeds
from consumer.scoring.state.store import StagedChanges, StateStore
from consumer.scoring.state.table import ABSENT
from consumer.scoring.state.writes import truncate_cycles, write_partition
from consumer.scoring.update_decode import decode_updates
from consumer.wire.context import change_input_keys
from consumer.wire.events import UNVERSIONED, DlqReason
from detection import ChangeDetector

__all__ = ["ChangeContext", "Committed", "process_change_batch", "split_replays"]

log = logging.getLogger(__name__)
Committed = Callable[
    [list[TopicPart]], Mapping[TopicPart, "int | None"]
]  # the group's offsets (Source.committed)


def _committed_of(partitions: list[TopicPart], committed: Committed | None) -> Mapping[TopicPart, int | None]:
    """The group's committed offsets of ``partitions`` (a failure to read them is retried like a restore's)."""
    if not partitions or committed is None:
        return {}
    try:
        return committed(partitions)
    except KafkaUnavailableError:
        raise
    except Exception as exc:  # the loop rewinds and retries the batch
        raise KafkaUnavailableError(f"could not read the committed offsets for the state: {exc!r}") from exc


_OFFSET = attrgetter("offset")
_PARTITION = attrgetter("partition")


def _committed_one(topic: str, committed: Committed, partition: int) -> int | None:
    """The group's committed offset of one input partition (None when unknown or unreadable)."""
    try:
        return committed([(topic, partition)]).get((topic, partition))
    except Exception as exc:  # asked again at the next truncation
        log.info("could not read the committed offset of %s[%d] (%r)", topic, partition, exc)
        return None


@dataclass(frozen=True, slots=True)
class ChangeContext:
    """What the change path needs besides the detector: the state, its changelog, the seed; and
    the loop's hooks into the state (assignment, publish, acknowledgement, rewind)."""

    store: StateStore
    changelog_topic: str
    seeds: Seeds | None = None
    episodes: EpisodeContext | None = None  # alert_mode "episodes"; None: "every-update"
    _warned: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.seeds is not None:  # the seed drops items once their state is durable (seeds.py)
            self.store.retire, self.store.reseed = self.seeds.retire, self.seeds.invalidate

    def serving_seed(self, version: str | None) -> None:
        """A seed model serves: it has no per-item state, so no episodes (said once)."""
        if self.episodes is not None and not self._warned:
            self._warned.append(str(version))
            log.warning("alert_mode=episodes, but model %s is a seed model: seed models have no per-item "
                        "state and publish one event per anomalous update", version)  # fmt: skip

    def keep_only(self, assigned: set[TopicPart]) -> None:
        """Drop the state of partitions no longer assigned (diffed each tick; a rebalance hook later)."""
        owned = {p for _, p in assigned}
        self.store.keep_stale(owned)
        gone = self.store.owned - owned
        if gone:
            self.store.revoke(gone)

    def prepare(
        self,
        detector: ChangeDetector,
        first: Mapping[TopicPart, int],
        tick: Callable[[], None],
        committed: Committed | None = None,
    ) -> None:
        """Before a batch: the state is of the detector's group field, the seed is loaded, and its
        partitions are restored."""
        self.store.regroup(detector.metadata.group_field)
        if self.seeds is not None:
            self.seeds.prepare(detector.metadata.group_field, tick)
        if self.episodes is not None:
            self.episodes.start(tick)
        if first and committed is not None:
            self.store.committed_offset = partial(_committed_one, next(iter(first))[0], committed)
        owned = self.store.owned
        self.restore_for(first, tick, committed)
        if self.seeds is not None and self.store.owned != owned:  # a restore may have invalidated it
            self.seeds.prepare(detector.metadata.group_field, tick)

    def restore_for(
        self,
        first: Mapping[TopicPart, int],
        tick: Callable[[], None] = lambda: None,
        committed: Committed | None = None,
    ) -> None:
        """Restore every partition about to be decided that the store does not own yet."""
        marks = _committed_of([tp for tp in first if tp[1] not in self.store.owned], committed)
        with _reseed_first(self.store):
            for tp, offset in sorted(first.items()):
                if tp[1] not in self.store.owned:
                    self.store.assign(tp[1], resume_offset=offset, tick=tick, committed=marks.get(tp))
            for tp, offset in sorted(first.items()):  # one dropped by a tick meanwhile (a rebalance)
                if tp[1] not in self.store.owned:
                    self.store.assign(tp[1], resume_offset=offset, committed=marks.get(tp))

    def published(self, result: BatchResult) -> None:
        """The outputs are handed to the sink: the next batch must see this one's changes."""
        if result.state is not None and (len(result.state) or result.state.resets):
            result.state_token = self.store.apply(result.state)

    def acknowledged(self, result: BatchResult) -> None:
        if result.state_token:
            self.store.settled(result.state_token)
            if self.store.cache is not None and result.state is not None:
                self.store.cache.add(result.state)
            elif result.state is not None:  # exactly-once: its transaction committed the changelog records
                for ids, _, _ in result.state.by_partition.values():
                    self.store.durable(ids)
        if self.store.cache is None:  # exactly-once: a cycle's slices are committed with their batch
            truncate_cycles(self.store)

    def rewound(self, *, to_committed: Iterable[TopicPart] = ()) -> None:
        """Every unacknowledged batch is read again: its changes must not be in the state.

        A rewind to the group's committed offsets (an aborted or unconfirmed transaction) drops
        those partitions instead: whether the last transaction committed is known only to the
        broker, so they are restored from the changelog (read_committed) where reading resumes.
        """
        self.store.rollback()
        self.store.revoke({p for _, p in to_committed})


@contextmanager
def _reseed_first(store: StateStore) -> Iterator[None]:
    """Restores within: the seed is reloaded (if one of them asks) before any restored item is retired,
    so a reload never brings back the items of the partitions restored before it (nor, at a start
    where nothing was retired yet, reads the whole inventory twice)."""
    retire, reseed = store.retire, store.reseed
    held: list[Hashes] = []
    asked: list[bool] = []
    store.retire, store.reseed = (held.append if retire is not None else None), partial(asked.append, True)
    try:
        yield
    finally:
        store.retire, store.reseed = retire, reseed
        if asked:
            reseed()
        if retire is not None:
            for hashes in held:
                retire(hashes)


def process_change_batch(
    records: Sequence[SourceRecord],
    detector: ChangeDetector,
    ctx: ChangeContext,
    config: BatchConfig,
    *,
    now: datetime,
) -> BatchResult:
    """Decide one poll batch with the change detector (see the module docstring)."""
    objs, candidates, failures, updates, rejects = decode_updates(
        records, config, detector.metadata.group_field
    )
    failures += [(i, 1, candidates[i], DlqReason.INVALID_ITEM, reason) for i, reason in rejects]
    where = list(range(len(candidates)))  # candidate index of each update
    if rejects:
        rejected = {i for i, _ in rejects}
        where = [i for i in where if i not in rejected]
    updates, where, ahead = drop_future(updates, where, candidates, skew_s=config.future_skew_s, now=now)
    failures += ahead  # far-future occurred_at: a dead letter, never the item's clock (future_time.py)
    sources = list(candidates) if len(where) == len(candidates) else list(map(candidates.__getitem__, where))
    partitions = list(map(_PARTITION, sources))
    keys: BatchKeys | None = BatchKeys.of(updates.item_ids)  # deduplicated and looked up once
    prior, prior_offsets = ctx.store.prior(partitions, updates.item_ids, keys)
    input_offsets = np.fromiter(map(_OFFSET, sources), np.int64, count=len(sources))
    keep = split_replays(sources, prior_offsets, input_offsets)
    if keep is not None:
        updates, sources, partitions = (
            updates.rows(keep),
            [sources[i] for i in keep],
            [partitions[i] for i in keep],
        )
        where = [where[i] for i in keep]
        keys = None  # of the updates before: deduplicated again
        prior, prior_offsets, input_offsets = prior[keep], prior_offsets[keep], input_offsets[keep]
    items = prior_states(updates, states_of(prior), prior_offsets != ABSENT, ctx.seeds, keys)
    outputs: list[OutputRecord] = []
    reasons: Counter[str] = Counter()
    anomalies: list[dict[str, Any]] = []
    version = detector.version or UNVERSIONED
    staged, suppressed = StagedChanges(), 0
    if len(updates):
        decisions, touched = detector.decide_local(updates, items.u, items.records, items.known, lazy=True)
        for i, exc in decisions.rejected.items():
            failures.append((where[i], 1, sources[i], DlqReason.MISSING_FIELD, str(exc)))
        episodes = track_episodes(ctx.episodes, episodes_of(prior), updates, sources, decisions, now=now,
                                  items=(items.ids, items.u), offsets=input_offsets)  # fmt: skip
        suppressed = episodes.suppressed
        inputs = EventInputs(objs, where, change_input_keys(detector.metadata.group_field))
        change_events(decisions, updates, sources, threshold=detector.threshold, version=version, config=config,
                      now=now, inputs=inputs, episodes=episodes.transitions if ctx.episodes is not None else None,
                      outputs=outputs, anomalies=anomalies)  # fmt: skip
        staged = staged_changes(items, touched, input_offsets, partitions)
        for p, (ids, recs, offs) in staged.by_partition.items():  # each item's episode joins its record
            staged.by_partition[p] = (ids, join(recs, episodes.of(ids)), offs)
        if ctx.store.cache is None:  # else written at the next commit (:mod:`.state.cache`)
            for p, chunk in staged.by_partition.items():
                written, piece = write_partition(ctx.store, ctx.changelog_topic, p, chunk, acked_only=False)
                outputs += written
                staged.slices += [piece] if piece is not None else []
    letters: list[OutputRecord] = []
    dead_letters(failures, config, letters, reasons)
    return BatchResult(
        outputs=letters + outputs,
        n_in=len(records),
        n_valid=len(records) - len(letters),
        n_anomalies=len(anomalies),
        dlq_reasons=reasons,
        anomalies=anomalies,
        model_version=version,
        state=staged,
        suppressed=suppressed,
    )


def split_replays(
    sources: Sequence[SourceRecord],
    prior_offsets: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64] | None = None,
) -> list[int] | None:
    """Indices of the updates to decide, or None for all of them (``offsets``: the sources' offsets).

    An update at an input offset at or before the one its item's state last changed at was
    applied already (its records are read again after a rewind the state did not see, e.g. a
    commit that landed after the restore read the committed offset). It is skipped: not decided,
    no event, no state change — its events were published with the change that is in the state.
    """
    if offsets is None:
        offsets = np.fromiter(map(_OFFSET, sources), dtype=np.int64, count=len(sources))
    replay = offsets <= prior_offsets
    if not replay.any():
        return None
    skipped = np.flatnonzero(replay).tolist()
    r = sources[skipped[0]]
    log.warning(
        "skipping %d update(s) their items' state already includes, from %s[%d]@%d (state changed at offset %d)",
        len(skipped),
        r.topic,
        r.partition,
        r.offset,
        int(prior_offsets[skipped[0]]),
        extra={"topic": r.topic, "partition": r.partition, "offset": r.offset},
    )
    return np.flatnonzero(~replay).tolist()
