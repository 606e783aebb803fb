"""One poll batch through the ``default`` change detector: updates judged against their item's history.

Pure apart from the two collaborators it is handed (the :class:`StateStore` of the owned
partitions, and optionally the inventory lookup that seeds unknown items):

1. decode the records (the seed path's decoder) and parse them as partial updates
   (:func:`detection.parse_updates`); an update that fails validation is a dead letter
   (``invalid_item``);
2. gather each update's prior state from its partition's table; an update whose input offset is
   not after the offset its item's state was last changed by is a *replay* of an update already
   applied (see :func:`split_replays`): it is neither decided nor applied again;
3. items no table holds start from the inventory snapshot's state (:mod:`.state.seeds`); items
   nowhere are new (their first update must be complete);
4. ``detector.decide_batch`` on the batch's prior states; an unknown item's incomplete update is a
   dead letter ``missing_field``; anomaly (and decision) events; one changelog record per changed
   item (its new record and the offset of its last update in the batch), to the changelog
   partition of its input partition. The state changes travel in the result (``state``): the loop
   applies them to the tables when the outputs are handed to the sink.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from consumer.ports import OutputRecord, SourceRecord, TopicPart
from consumer.scoring.batch import BatchConfig, BatchResult, dead_letters, decode_records
from consumer.scoring.state.changelog import changelog_records
from consumer.scoring.state.seeds import Seeds
from consumer.scoring.state.store import StagedChanges, StateStore
from consumer.scoring.state.table import ABSENT
from consumer.wire.events import UNVERSIONED, DlqReason, build_events
from detection import ChangeDetector, UpdateBatch, parse_updates
from detection.change_decisions import ChangeDecisions
from detection.change_features import CHANGE_FEATURE_NAMES
from detection.detector import baseline_table
from detection.item_state import STATE_DTYPE, words

__all__ = ["ChangeContext", "process_change_batch", "split_replays"]

log = logging.getLogger(__name__)
_OFFSET = attrgetter("offset")


@dataclass(frozen=True, slots=True)
class ChangeContext:
    """What the change path needs besides the detector: the state, its changelog, the seed; and
    the loop's hooks into the state (assignment, publish, acknowledgement, rewind)."""

    store: StateStore
    changelog_topic: str
    seeds: Seeds | None = None

    def keep_only(self, assigned: set[TopicPart]) -> None:
        """Drop the state of partitions no longer assigned (diffed each tick; a rebalance hook later)."""
        gone = self.store.owned - {p for _, p in assigned}
        if gone:
            self.store.revoke(gone)

    def prepare(
        self, detector: ChangeDetector, first: Mapping[TopicPart, int], tick: Callable[[], None]
    ) -> None:
        """Before a batch: the seed is loaded, and its partitions are restored."""
        if self.seeds is not None:
            self.seeds.prepare(detector.metadata.group_field, tick)
        self.restore_for(first, tick)

    def restore_for(self, first: Mapping[TopicPart, int], tick: Callable[[], None] = lambda: None) -> None:
        """Restore every partition about to be decided that the store does not own yet."""
        for (_, p), offset in sorted(first.items()):
            if p not in self.store.owned:
                self.store.assign(p, resume_offset=offset, tick=tick)
        for (_, p), offset in sorted(first.items()):  # one dropped by a tick meanwhile (a rebalance)
            if p not in self.store.owned:
                self.store.assign(p, resume_offset=offset)

    def published(self, result: BatchResult) -> None:
        """The outputs are handed to the sink: the next batch must see this one's changes."""
        if result.state is not None and len(result.state):
            result.state_token = self.store.apply(result.state)

    def acknowledged(self, result: BatchResult) -> None:
        if result.state_token:
            self.store.settled(result.state_token)

    def rewound(self, *, to_committed: Iterable[TopicPart] = ()) -> None:
        """Every unacknowledged batch is read again: its changes must not be in the state.

        A rewind to the group's committed offsets (an aborted or unconfirmed transaction) drops
        those partitions instead: whether the last transaction committed is known only to the
        broker, so they are restored from the changelog (read_committed) where reading resumes.
        """
        self.store.rollback()
        self.store.revoke({p for _, p in to_committed})


def process_change_batch(
    records: Sequence[SourceRecord],
    detector: ChangeDetector,
    ctx: ChangeContext,
    config: BatchConfig,
    *,
    now: datetime,
) -> BatchResult:
    """Decide one poll batch with the change detector (see the module docstring)."""
    objs, candidates, failures = decode_records(records, config)
    updates, rejects = parse_updates(objs, group_field=detector.metadata.group_field)
    failures += [(i, 1, candidates[i], DlqReason.INVALID_ITEM, reason) for i, reason in rejects]
    rejected = {i for i, _ in rejects}
    where = [i for i in range(len(candidates)) if i not in rejected]  # candidate index of each update
    sources = [candidates[i] for i in where]
    partitions = [r.partition for r in sources]
    prior, prior_offsets = ctx.store.prior(partitions, updates.item_ids)
    keep = split_replays(sources, prior_offsets)
    if keep is not None:
        updates, sources, partitions = (
            _take(updates, keep),
            [sources[i] for i in keep],
            [partitions[i] for i in keep],
        )
        where = [where[i] for i in keep]
        prior, prior_offsets = prior[keep], prior_offsets[keep]
    items = _prior_states(updates, prior, prior_offsets != ABSENT, ctx.seeds)
    outputs: list[OutputRecord] = []
    reasons: Counter[str] = Counter()
    anomalies: list[dict[str, Any]] = []
    version = detector.version or UNVERSIONED
    staged = StagedChanges()
    if len(updates):
        decisions, touched = detector.decide_local(updates, items.u, items.records, items.known)
        for i, exc in decisions.rejected.items():
            failures.append((where[i], 1, sources[i], DlqReason.MISSING_FIELD, str(exc)))
        _events(decisions, updates, sources, detector, version, config, now, outputs, anomalies)
        staged = _staged(items, touched, sources, partitions)
        for p, (ids, recs, offs) in staged.by_partition.items():
            outputs += changelog_records(ctx.changelog_topic, p, ids, recs, offs)
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
    )


def split_replays(sources: Sequence[SourceRecord], prior_offsets: npt.NDArray[np.int64]) -> list[int] | None:
    """Indices of the updates to decide, or None for all of them.

    An update at an input offset at or before the one its item's state last changed at was
    applied already (its records are read again after a rewind the state did not see, e.g. a
    commit that landed after the restore read the committed offset). It is skipped: not decided,
    no event, no state change — its events were published with the change that is in the state.
    """
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


def _take(updates: UpdateBatch, keep: list[int]) -> UpdateBatch:
    idx = np.asarray(keep, dtype=np.intp)
    return UpdateBatch(
        [updates.item_ids[i] for i in keep],
        updates.stock[idx],
        updates.min[idx],
        updates.max[idx],
        updates.price[idx],
        updates.occurred_at[idx],
        [updates.groups[i] for i in keep],
        [updates.event_ids[i] for i in keep],
    )


@dataclass(frozen=True, slots=True, eq=False)
class _Items:
    """The batch's distinct items (first-occurrence order) and their states, for ``decide_local``."""

    ids: list[str]
    u: npt.NDArray[np.intp]  # per update: its item's index in ``ids``
    records: npt.NDArray[np.void]  # per item: its state (STATE_DTYPE), where ``known``
    known: npt.NDArray[np.bool_]


def _prior_states(
    updates: UpdateBatch,
    prior: npt.NDArray[np.void],
    known: npt.NDArray[np.bool_],
    seeds: Seeds | None,
) -> _Items:
    """The batch's items' states: from the partition tables, else from the inventory snapshot."""
    ids = updates.item_ids
    n = len(ids)
    uniq = list(dict.fromkeys(ids))
    k = len(uniq)
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
    return _Items(uniq, u, records, have)


def _staged(
    items: _Items,
    touched: npt.NDArray[np.bool_],
    sources: Sequence[SourceRecord],
    partitions: list[int],
) -> StagedChanges:
    """Each changed item's record, under its input partition, with the offset of its last update."""
    n = len(sources)
    last = np.full(len(items.ids), -1, dtype=np.intp)
    np.maximum.at(last, items.u, np.arange(n, dtype=np.intp))  # later rows win
    changed = np.flatnonzero(touched)
    at = last[changed]
    offsets = np.fromiter(map(_OFFSET, sources), dtype=np.int64, count=n)[at]
    records = words(items.records)[changed].reshape(-1).view(STATE_DTYPE)
    ids = [items.ids[j] for j in changed.tolist()]
    out = StagedChanges()
    parts = np.asarray(partitions, dtype=np.int64)[at]
    if parts.size and parts[0] == parts[-1] and (parts == parts[0]).all():  # the usual: one partition
        out.by_partition[int(parts[0])] = (ids, records, offsets)
        return out
    for p in np.unique(parts).tolist():
        sel = np.flatnonzero(parts == p)
        out.by_partition[p] = ([ids[j] for j in sel.tolist()], records[sel], offsets[sel])
    return out


class _Decided:
    """``DecisionsLike`` view of :class:`ChangeDecisions` for the shared event builder."""

    def __init__(self, d: ChangeDecisions) -> None:
        self.scores, self.is_anomaly, self.features, self._d = d.scores, d.is_anomaly, d.features, d

    def severity(self, i: int) -> str:
        return self._d.level(i)

    def reasons(self, i: int) -> Sequence[str]:
        return self._d.reasons(i)


def _events(  # noqa: PLR0917 (one private call site)
    decisions: ChangeDecisions,
    updates: UpdateBatch,
    sources: Sequence[SourceRecord],
    detector: ChangeDetector,
    version: str,
    config: BatchConfig,
    now: datetime,
    outputs: list[OutputRecord],
    anomalies: list[dict[str, Any]],
) -> None:
    scored = np.ones(len(updates), bool)
    scored[list(decisions.rejected)] = False
    rows = np.flatnonzero(scored if config.decisions_topic else decisions.is_anomaly & scored)
    if not rows.size:
        return
    new = decisions.new_values

    def item(i: int) -> dict[str, Any]:
        stock, low, high, price = new[i].tolist()
        return {"item_id": updates.item_ids[i], "event_id": updates.event_ids[i], "stock_quantity": stock,
                "min_stock_level": low, "max_stock_level": high, "price": price}  # fmt: skip

    events = build_events(_Decided(decisions), rows, item_ids=updates.item_ids, event_ids=updates.event_ids,
                          sources=sources, item=item, version=version, threshold=detector.threshold, now=now,
                          feature_names=CHANGE_FEATURE_NAMES)  # fmt: skip
    dumps = orjson.dumps
    for i, event, anomaly in events:
        key = event["item_id"].encode()
        if config.decisions_topic:
            outputs.append(OutputRecord(config.decisions_topic, key, dumps(event)))
        if anomaly is not None:
            anomaly.setdefault("kind", decisions.kind(i))  # detect2 may add these in the builder
            anomaly.setdefault("severity_score", float(decisions.severity_score[i]))
            anomaly.setdefault("rules", list(decisions.rules_fired(i)))
            anomalies.append(anomaly)
            outputs.append(OutputRecord(config.anomaly_topic, key, dumps(anomaly)))
