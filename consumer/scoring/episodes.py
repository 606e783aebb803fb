"""Alert episodes of the ``default`` detector: one alert per run of anomalous updates — pure, no I/O.

Per item (its :data:`EPISODE_DTYPE` record, kept beside the detector's record in the state store):

* the first anomalous update **opens** an episode (``open``): its input offset names it for good
  (the episode id is derived from it, so a replay opens the same episode), and the record keeps
  ``first_seen``, ``last_seen``, ``occurrences`` and the highest severity level so far;
* a later anomalous update publishes nothing, except ``escalated`` when its level is above every
  level of the episode so far, and ``renotified`` (the ``open`` event again, ``renotified: true``)
  when ``renotify_after_s`` > 0 seconds of event time passed since the last notification;
* ``resolve_after`` consecutive normal updates **resolve** it (``resolved``): the hysteresis — an
  item hovering at the threshold (anomalous, normal, anomalous …) stays in one episode;
* an episode whose open is suppressed (:mod:`consumer.wire.suppressions`) is tracked **silently**:
  no escalation, re-notification or resolution is published for it, and no new episode opens
  mid-window; a suppression that starts while a notified episode is open withholds its
  escalations and re-notifications (its ``resolved`` still closes the alert).

Times are event times in epoch seconds (the update's ``occurred_at``, else the record's timestamp),
so a replay of the same records makes the same decisions.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from functools import partial
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "EPISODE_DTYPE",
    "LEVEL_NAMES",
    "EpisodePolicy",
    "Kind",
    "Status",
    "Transition",
    "advance",
    "advance_compiled",
    "level_codes",
]

EPISODE_DTYPE: Final = np.dtype(
    [
        ("opened_offset", "<i8"),  # input offset of the opening update (names the episode)
        ("first_seen", "<f8"),  # event time of the opening update, epoch seconds
        ("last_seen_s", "<f4"),  # the latest anomalous update, seconds after first_seen
        ("notified_s", "<f4"),  # the latest notification (open, escalated, renotified), seconds after
        ("occurrences", "<u4"),  # anomalous updates in the episode
        ("normal_run", "<u2"),  # consecutive normal updates since the latest anomalous one
        ("status", "u1"),  # Status
        ("max_level", "u1"),  # index in LEVEL_NAMES
    ]
)
if EPISODE_DTYPE.itemsize != 32:  # pragma: no cover - a layout change must be deliberate (changelogs hold it)
    raise AssertionError(f"EPISODE_DTYPE is {EPISODE_DTYPE.itemsize} bytes, expected 32")

LEVEL_NAMES: Final = ("low", "medium", "high", "critical")
_LEVEL: Final = {name: k for k, name in enumerate(LEVEL_NAMES)}
_MAX_U4: Final = 2**32 - 1
_MAX_U2: Final = 2**16 - 1


class Status(IntEnum):
    NONE = 0  # no episode
    OPEN = 1  # open and notified
    SILENT = 2  # open, its opening was suppressed: nothing of it is published


class Kind(StrEnum):
    """What an update did to its item's episode (``SUPPRESSED`` publishes nothing; the rest one event)."""

    OPEN = "open"
    ESCALATED = "escalated"
    RENOTIFIED = "renotified"
    RESOLVED = "resolved"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True, slots=True)
class EpisodePolicy:
    resolve_after: int = 3
    renotify_after_s: float = 0.0  # 0: never re-notify


class Transition(NamedTuple):
    """One update's effect on its episode, with the episode as it stands after the update (a tuple:
    a batch makes ~100, and a frozen dataclass costs ~4x a tuple to build)."""

    row: int
    kind: Kind
    opened_offset: int
    first_seen: float
    last_seen: float
    occurrences: int
    max_level: str
    at: float  # the update's event time

    @property
    def duration_s(self) -> float:
        return max(0.0, self.at - self.first_seen)


def level_codes(levels: Sequence[str]) -> npt.NDArray[np.int8]:
    """Level index of each row (-1 for ``none``, i.e. not anomalous)."""
    return np.fromiter((_LEVEL.get(v, -1) for v in levels), dtype=np.int8, count=len(levels))


def advance(  # noqa: PLR0917 (arrays of one batch, side by side)
    episodes: npt.NDArray[np.void],
    item_of: npt.NDArray[np.intp],
    anomalous: npt.NDArray[np.bool_],
    levels: npt.NDArray[np.int8],
    at: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.int64],
    policy: EpisodePolicy,
    suppressed: Callable[[int], bool] = lambda _row: False,
) -> list[Transition]:
    """Apply a batch's decided updates (rows in stream order) to their items' episodes.

    ``episodes`` holds one record per item (row ``r`` is of item ``item_of[r]``) and is updated in
    place; ``suppressed(r)`` says whether an active suppression covers row ``r``'s item and
    reasons (asked only when an episode would open or notify). Returns the transitions in order.
    """
    n = item_of.shape[0]
    if not n:
        return []
    involved = episodes["status"] != Status.NONE
    involved[item_of[anomalous]] = True
    rows = np.flatnonzero(involved[item_of])
    if not rows.size:
        return []
    items = np.flatnonzero(involved)
    # Python scalars for the loop (numpy field access costs ~1 us each); written back once
    eps = {int(k): _Ep(*rec) for k, rec in zip(items.tolist(), episodes[items].tolist(), strict=True)}
    out: list[Transition] = []
    cols = zip(rows.tolist(), item_of[rows].tolist(), anomalous[rows].tolist(), levels[rows].tolist(),
               at[rows].tolist(), offsets[rows].tolist(), strict=True)  # fmt: skip
    resolve_after = policy.resolve_after
    for r, k, flagged, level, t, offset in cols:
        ep = eps[k]
        if not flagged:  # the common case inline: a normal update of an item in no episode, or not the last
            if ep.status == _NONE:
                continue
            ep.normal_run = min(ep.normal_run + 1, _MAX_U2)
            if ep.normal_run < resolve_after:
                continue
            if ep.status == _OPEN:
                out.append(_transition(r, Kind.RESOLVED, ep, t))
            eps[k] = _Ep()
            continue
        kind = _step(ep, level, t, offset, policy, partial(suppressed, r))
        if kind is not None:
            out.append(_transition(r, kind, ep, t))
    episodes[items] = np.array([eps[k].record() for k in items.tolist()], EPISODE_DTYPE)
    return out


def advance_compiled(  # noqa: PLR0917 (advance's arguments)
    episodes: npt.NDArray[np.void],
    item_of: npt.NDArray[np.intp],
    anomalous: npt.NDArray[np.bool_],
    levels: npt.NDArray[np.int8],
    at: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.int64],
    policy: EpisodePolicy,
    suppressed: Callable[[int], bool] | None = None,
) -> list[Transition]:
    """:func:`advance` as one compiled loop (:mod:`detection.episode_kernel`): the same transitions
    and records, ~10x faster. ``suppressed`` must depend on the row alone: it is asked up front, for
    every anomalous row (None: no row is)."""
    from detection.episode_kernel import KINDS, advance_rows

    n = item_of.shape[0]
    if not n:
        return []
    quiet = np.zeros(n, np.bool_)
    if suppressed is not None:
        for r in np.flatnonzero(anomalous).tolist():
            quiet[r] = suppressed(r)
    names = EPISODE_DTYPE.names or ()
    cols = [np.ascontiguousarray(episodes[name]) for name in names]
    rows = [np.ascontiguousarray(a, t) for a, t in ((item_of, np.intp), (anomalous, np.bool_), (levels, np.int8),
                                                    (at, np.float64), (offsets, np.int64), (quiet, np.bool_))]  # fmt: skip
    out = (np.empty((n, 2), np.int64), np.empty((n, 3), np.int64), np.empty((n, 3), np.float64))
    kernel: Callable[..., int] = advance_rows  # numba's Dispatcher types no kernel's arguments
    m = kernel(*cols, *rows, int(policy.resolve_after), float(policy.renotify_after_s), *out)
    for name, col in zip(names, cols, strict=True):
        episodes[name] = col
    kinds = [Kind(k) for k in KINDS]
    # a list per column: (row, kind code), (opened offset, occurrences, level), (first, last, at)
    (row, code), (opened, count, _), (first, last, when) = (a[:m].T.tolist() for a in out)
    level = map(LEVEL_NAMES.__getitem__, np.minimum(out[1][:m, 2], len(LEVEL_NAMES) - 1).tolist())
    columns = zip(row, map(kinds.__getitem__, code), opened, first, last, count, level, when, strict=True)
    return list(map(Transition._make, columns))  # ~2x the comprehension unpacking each row's tuples


_NONE: Final = int(Status.NONE)  # plain ints: the loop compares them once per update
_OPEN: Final = int(Status.OPEN)
_F4: Final = struct.Struct("<f")


def _f4(x: float) -> float:
    """``x`` as the record's float32 field stores it (so batch boundaries never change a result)."""
    return float(_F4.unpack(_F4.pack(x))[0])


class _Ep:
    """One item's episode as Python scalars (the fields of EPISODE_DTYPE, in order)."""

    __slots__ = ("first_seen", "last_seen_s", "max_level", "normal_run", "notified_s", "occurrences",
                 "opened_offset", "status")  # fmt: skip

    def __init__(  # noqa: PLR0917 (a record's fields, in EPISODE_DTYPE order)
        self, opened_offset: int = 0, first_seen: float = 0.0, last_seen_s: float = 0.0,
        notified_s: float = 0.0, occurrences: int = 0, normal_run: int = 0, status: int = 0,
        max_level: int = 0,
    ) -> None:  # fmt: skip
        self.opened_offset, self.first_seen, self.last_seen_s = opened_offset, first_seen, last_seen_s
        self.notified_s, self.occurrences, self.normal_run = notified_s, occurrences, normal_run
        self.status, self.max_level = status, max_level

    def record(self) -> tuple[int, float, float, float, int, int, int, int]:
        return (self.opened_offset, self.first_seen, self.last_seen_s, self.notified_s, self.occurrences,
                self.normal_run, self.status, self.max_level)  # fmt: skip


def _step(  # noqa: PLR0917 (the fields an anomalous update needs)
    ep: _Ep,
    level: int,
    t: float,
    offset: int,
    policy: EpisodePolicy,
    suppressed: Callable[[], bool],
) -> Kind | None:
    """An anomalous update's effect on its item's episode (``ep``, updated in place)."""
    status = ep.status
    level = max(level, 0)
    if status == _NONE:
        quiet = suppressed()
        ep.opened_offset, ep.first_seen, ep.last_seen_s, ep.notified_s = offset, t, 0.0, 0.0
        ep.occurrences, ep.normal_run, ep.max_level = 1, 0, level
        ep.status = Status.SILENT if quiet else Status.OPEN
        return Kind.SUPPRESSED if quiet else Kind.OPEN
    since = t - ep.first_seen
    ep.occurrences = min(ep.occurrences + 1, _MAX_U4)
    ep.normal_run = 0
    ep.last_seen_s = _f4(max(ep.last_seen_s, since))
    higher = level > ep.max_level
    if higher:
        ep.max_level = level
    if status != _OPEN:
        return None
    due = policy.renotify_after_s > 0 and since - ep.notified_s >= policy.renotify_after_s
    if not (higher or due) or suppressed():
        return None
    ep.notified_s = _f4(max(ep.notified_s, since))
    return Kind.ESCALATED if higher else Kind.RENOTIFIED


def _transition(row: int, kind: Kind, ep: _Ep, t: float) -> Transition:
    return Transition(
        row=row,
        kind=kind,
        opened_offset=ep.opened_offset,
        first_seen=ep.first_seen,
        last_seen=ep.first_seen + ep.last_seen_s,
        occurrences=ep.occurrences,
        max_level=LEVEL_NAMES[min(ep.max_level, len(LEVEL_NAMES) - 1)],
        at=t,
    )
