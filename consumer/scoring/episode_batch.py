"""The change path's hook for alert episodes: a batch's decisions -> episode transitions and events.

:func:`track_episodes` runs :func:`consumer.scoring.episodes.advance` (compiled:
``advance_compiled``) over the decided updates of a batch (rejected ones are no update of their
item) with each item's episode as the state store holds it, and returns the transitions by row
and every item's episode after the batch (the part of the item records the changelog carries).
With ``alert_mode = "every-update"`` (no :class:`EpisodeContext`) the episodes pass through
unchanged. :func:`episode_event` turns the event the builder made for a transition's update into
the published one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from consumer.scoring.episodes import EPISODE_DTYPE, EpisodePolicy, Kind, Transition, advance_compiled
from consumer.scoring.suppression_cache import SuppressionCache
from consumer.wire.episode_events import add_episode_fields, episode_id, event_times
from consumer.wire.events import SourceLike
from detection import UpdateBatch
from detection.change_decisions import ChangeDecisions
from detection.items import EARLIEST_TIME, LATEST_TIME

__all__ = [
    "EpisodeContext",
    "EpisodeOutcome",
    "add_transition_fields",
    "batch_transition_fields",
    "episode_alert",
    "episode_event",
    "record_stamps",
    "track_episodes",
    "transition_fields",
]

log = logging.getLogger(__name__)

Records = npt.NDArray[np.void]
FIRST_LOAD_WAIT_S: Final = 15.0
_TIMESTAMP: Final = attrgetter("timestamp")
_LEVEL_CUTS: Final = np.array([65.0, 80.0, 95.0])  # detection.severity: low < 65 <= medium < 80 <= high < 95
_STATUS: Final = {k: "open" if k in (Kind.OPEN, Kind.RENOTIFIED) else str(k) for k in Kind}  # event status


@dataclass(frozen=True, slots=True)
class EpisodeContext:
    """``alert_mode = "episodes"``: the policy and the suppressions consulted before an episode opens."""

    policy: EpisodePolicy = field(default_factory=EpisodePolicy)
    suppressions: SuppressionCache | None = None

    def begin(self) -> None:
        """Start the suppressions' first load in the background (before the first batch's poll)."""
        if self.suppressions is not None:
            self.suppressions.start()

    def stop(self) -> None:
        if self.suppressions is not None:
            self.suppressions.stop()

    def start(self, tick: Callable[[], None] = lambda: None) -> None:
        """Start the suppressions' refresh; the first batch waits (ticking) for their first load, so a
        suppressed item does not alert right after a restart (at most FIRST_LOAD_WAIT_S)."""
        cache = self.suppressions
        if cache is not None and cache.start() and not cache.wait_first(FIRST_LOAD_WAIT_S, tick):
            log.warning(
                "suppressions not loaded within %.0fs: deciding without them meanwhile", FIRST_LOAD_WAIT_S
            )


@dataclass(slots=True)
class EpisodeOutcome:
    transitions: dict[int, Transition]  # by batch row
    ids: list[str]  # the batch's distinct items: row k of ``episodes`` is ``ids[k]``'s
    episodes: Records  # each item's episode after the batch
    suppressed: int = 0  # episodes opened silently (a suppression matched)
    _index: dict[str, int] | None = None

    @property
    def index(self) -> dict[str, int]:
        """Item id -> row of ``episodes`` (built when first asked: the usual :meth:`of` needs none)."""
        if self._index is None:
            self._index = dict(zip(self.ids, range(len(self.ids)), strict=True))
        return self._index

    def of(self, item_ids: Sequence[str]) -> Records:
        if item_ids == self.ids:  # the usual: every item of a one-partition batch changed
            return self.episodes.view(np.uint8).copy().view(EPISODE_DTYPE)  # ~8x a structured copy
        rows = np.fromiter(map(self.index.__getitem__, item_ids), np.intp, count=len(item_ids))
        raw = self.episodes.view(np.uint8).reshape(-1, EPISODE_DTYPE.itemsize)
        return raw[rows].reshape(-1).view(EPISODE_DTYPE)  # a byte copy: ~20x a structured one


def track_episodes(
    ctx: EpisodeContext | None,
    prior: Records,
    updates: UpdateBatch,
    sources: Sequence[SourceLike],
    decisions: ChangeDecisions,
    *,
    now: datetime,
    items: tuple[list[str], npt.NDArray[np.intp]] | None = None,
    offsets: npt.NDArray[np.int64] | None = None,
    stamps: npt.NDArray[np.float64] | None = None,
) -> EpisodeOutcome:
    """See the module docstring; ``prior`` is each row's item episode before the batch; ``items``:
    the batch's distinct item ids in first-occurrence order and each row's index in them, when
    known (``BatchItems``); ``offsets`` and ``stamps``: each row's input offset and record
    timestamp (ms, NaN for none), when known."""
    index: dict[str, int] | None = None  # else built on demand (EpisodeOutcome.index)
    if items is None:
        uniq = list(dict.fromkeys(updates.item_ids))
        index = lookup = dict(zip(uniq, range(len(uniq)), strict=True))
        item_of = np.fromiter(map(lookup.__getitem__, updates.item_ids), np.intp, count=len(updates))
    else:
        uniq, item_of = items
    # item indices are 0..k-1 in first-occurrence order: an item's first row is where the running
    # maximum steps up (no sort, as np.unique's return_index would)
    first = np.flatnonzero(np.diff(np.maximum.accumulate(item_of), prepend=-1))
    whole = np.dtype((np.void, EPISODE_DTYPE.itemsize))  # rows as opaque bytes: a flat copy per row
    episodes = np.ascontiguousarray(prior).view(whole)[first].view(EPISODE_DTYPE)
    if ctx is None or not len(updates):
        return EpisodeOutcome({}, uniq, episodes, _index=index)
    rows = np.arange(len(updates))
    every = not decisions.rejected  # the usual: every row decided, its columns used as they are
    if not every:
        rows = np.setdiff1d(rows, np.fromiter(decisions.rejected, np.intp), assume_unique=True)
    anomalous = decisions.is_anomaly.astype(bool) if every else decisions.is_anomaly[rows].astype(bool)
    severity = decisions.severity_score if every else decisions.severity_score[rows]
    levels = np.where(anomalous, np.searchsorted(_LEVEL_CUTS, severity, side="right"), -1)
    # the kernel reads a time of an anomalous row, and of a normal one only when it resolves an
    # episode: those are read after it (each is ~5 % of a batch's rows; a time is a C call each)
    flagged = rows[anomalous] if not every else np.flatnonzero(anomalous)
    at = event_times_of(updates.occurred_at, sources, flagged, stamps, now)
    if offsets is None:
        offsets = np.fromiter((s.offset for s in sources), np.int64, count=len(sources))
    if not every:
        at, offsets = at[rows], offsets[rows]
    cache = ctx.suppressions

    def suppressed(j: int) -> bool:
        i = int(rows[j])
        if cache is None or not cache.for_item(updates.item_ids[i]):
            return False
        reasons = [*decisions.reasons(i), *decisions.rules_fired(i)]
        return cache.matches(updates.item_ids[i], reasons, now) is not None

    found = advance_compiled(
        episodes, item_of if every else item_of[rows], anomalous, levels.astype(np.int8), at, offsets, ctx.policy,
        suppressed if cache is not None else None,
    )  # fmt: skip
    batch_row = [t.row for t in found] if every else rows[[t.row for t in found]].tolist()  # ~100 of ~2,000
    ends = [j for j, t in enumerate(found) if t.kind is Kind.RESOLVED]
    if ends:
        need = np.array([batch_row[j] for j in ends], np.intp)
        times = event_times_of(updates.occurred_at, sources, need, stamps, now)[need].tolist()
        for j, when in zip(ends, times, strict=True):
            found[j] = found[j]._replace(at=when)
    transitions = {r: t for r, t in zip(batch_row, found, strict=True) if t.kind is not Kind.SUPPRESSED}
    n_suppressed = len(found) - len(transitions)
    return EpisodeOutcome(transitions, uniq, episodes, n_suppressed, _index=index)


def event_times_of(
    occurred: npt.NDArray[np.float64],
    sources: Sequence[SourceLike],
    need: npt.NDArray[np.intp],
    stamps: npt.NDArray[np.float64] | None,
    now: datetime,
) -> npt.NDArray[np.float64]:
    """Each row's event time in s: its ``occurred_at``, else its record's timestamp, else ``now``;
    read for the rows ``need`` only (the others get ``now``)."""
    now_s = now.timestamp()
    at = np.full(len(occurred), now_s)
    if not need.size:
        return at
    times = occurred[need]
    missing = ~np.isfinite(times)
    if missing.any():
        picked = need[missing]
        got = (
            stamps[picked] if stamps is not None else record_stamps([sources[i] for i in picked.tolist()])
        ) / 1000
        got[(got < EARLIEST_TIME) | (got > LATEST_TIME)] = np.nan  # a producer sets any timestamp
        times[missing] = np.where(np.isfinite(got), got, now_s)
    at[need] = times
    return at


def record_stamps(sources: Sequence[SourceLike]) -> npt.NDArray[np.float64]:
    """Each record's timestamp in ms as float64 (NaN where it has none); a record type with a
    ``timestamps_of(records)`` (librdkafka's) reads them all at once."""
    batch = getattr(type(sources[0]), "timestamps_of", None) if len(sources) else None

    def read() -> Iterable[int | None]:
        return batch(sources) if batch is not None else map(_TIMESTAMP, sources)

    try:  # Kafka's are ints: read as int64 (~1.5x faster than into float64), exact below 2**53
        return np.fromiter(read(), np.int64, count=len(sources)).astype(np.float64)
    except (TypeError, OverflowError):  # a record without one (None) or beyond int64
        return np.fromiter(read(), np.float64, count=len(sources))  # None -> NaN


def episode_alert(
    event: dict[str, Any],
    anomaly: dict[str, Any] | None,
    t: Transition,
    source: SourceLike,
    *,
    item: Callable[[], dict[str, Any]],
    links: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The anomaly-topic event of transition ``t`` from the builder's events of its update (``consume``
    and ``score --alerts`` both): a resolving update is normal, so its decision event gets the
    anomaly's context (``item()``: the item with its attributes, and the links)."""
    if anomaly is None:
        anomaly = event | {"item": item()}
        if links is not None:
            anomaly["links"] = dict(links)
    return episode_event(anomaly, t, source)


def episode_event(event: dict[str, Any], t: Transition, source: SourceLike) -> dict[str, Any]:
    """The published event of transition ``t``: the builder's event of its update plus the episode."""
    return event | transition_fields(t, source, event["item_id"])


def transition_fields(t: Transition, source: SourceLike, item_id: str) -> dict[str, Any]:
    """What transition ``t`` of ``item_id``'s episode adds to the event of its update (``source``)."""
    fields: dict[str, Any] = {}
    add_transition_fields(fields, t, episode_id(source.topic, source.partition, t.opened_offset, item_id))
    return fields


def add_transition_fields(event: dict[str, Any], t: Transition, episode: str) -> None:
    """:func:`transition_fields` written into ``event`` (as ``event.update`` of them); ``episode``: the
    episode's id (:func:`episode_id`; the change path makes a batch's at once with ``episode_ids``)."""
    kind = t.kind
    add_episode_fields(
        event,
        status=_STATUS[kind],  # type: ignore[arg-type]  # one of the three by construction
        episode=episode,
        first_seen=t.first_seen,
        last_seen=t.last_seen,
        occurrences=t.occurrences,
        max_severity=t.max_level,
        renotified=kind is Kind.RENOTIFIED,
        resolved_at=t.at if kind is Kind.RESOLVED else None,
    )


def batch_transition_fields(
    transitions: Sequence[Transition], episodes: Sequence[str]
) -> list[dict[str, Any]]:
    """:func:`transition_fields` of each of a batch's ``transitions`` (``episodes``: their ids), built
    in one pass with every time worded at once: no calls per event."""
    ends = [t.at for t in transitions if t.kind is Kind.RESOLVED]  # only a resolution words its time
    said = event_times([x for t in transitions for x in (t.first_seen, t.last_seen)] + ends)
    seen, ended = iter(said), iter(said[2 * len(transitions) :])
    out: list[dict[str, Any]] = []
    for t, episode in zip(transitions, episodes, strict=True):
        kind = t.kind
        fields = {"status": _STATUS[kind], "episode_id": episode, "first_seen": next(seen),
                  "last_seen": next(seen), "occurrences": t.occurrences, "max_severity": t.max_level}  # fmt: skip
        if kind is Kind.RENOTIFIED:
            fields["renotified"] = True
        elif kind is Kind.RESOLVED:
            fields["resolved_at"], fields["duration_s"] = next(ended), round(max(0.0, t.at - t.first_seen), 3)
        out.append(fields)
    return out
