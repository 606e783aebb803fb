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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from functools import partial
from typing import Final

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


@dataclass(frozen=True, slots=True)
class Transition:
    """One update's effect on its episode, with the episode as it stands after the update."""

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
    rows = np.flatnonzero(involved[item_of]).tolist()
    out: list[Transition] = []
    for r in rows:
        k = item_of[r]
        ep = episodes[k]  # a view: writes land in ``episodes``
        kind = _step(ep, bool(anomalous[r]), int(levels[r]), float(at[r]), int(offsets[r]), policy,
                     partial(suppressed, r))  # fmt: skip
        if isinstance(kind, Kind):
            out.append(_transition(r, kind, ep, float(at[r])))
        if kind is Kind.RESOLVED or kind is _CLOSED:
            episodes[k] = _EMPTY
    return out


_EMPTY: Final = np.zeros((), EPISODE_DTYPE)
_CLOSED: Final = object()  # a silent episode ends: nothing to publish


def _step(  # noqa: PLR0911, PLR0917 (one return per transition reads best)
    ep: np.void,
    anomalous: bool,
    level: int,
    t: float,
    offset: int,
    policy: EpisodePolicy,
    suppressed: Callable[[], bool],
) -> Kind | object | None:
    status = int(ep["status"])
    if not anomalous:
        if status == Status.NONE:
            return None
        run = min(int(ep["normal_run"]) + 1, _MAX_U2)
        ep["normal_run"] = run
        if run < policy.resolve_after:
            return None
        return Kind.RESOLVED if status == Status.OPEN else _CLOSED
    level = max(level, 0)
    if status == Status.NONE:
        quiet = suppressed()
        ep["opened_offset"], ep["first_seen"] = offset, t
        ep["last_seen_s"] = ep["notified_s"] = 0.0
        ep["occurrences"], ep["normal_run"], ep["max_level"] = 1, 0, level
        ep["status"] = Status.SILENT if quiet else Status.OPEN
        return Kind.SUPPRESSED if quiet else Kind.OPEN
    since = t - float(ep["first_seen"])
    ep["occurrences"] = min(int(ep["occurrences"]) + 1, _MAX_U4)
    ep["normal_run"] = 0
    ep["last_seen_s"] = max(float(ep["last_seen_s"]), since)
    higher = level > int(ep["max_level"])
    if higher:
        ep["max_level"] = level
    if status != Status.OPEN:
        return None
    due = policy.renotify_after_s > 0 and since - float(ep["notified_s"]) >= policy.renotify_after_s
    if not (higher or due) or suppressed():
        return None
    ep["notified_s"] = max(float(ep["notified_s"]), since)
    return Kind.ESCALATED if higher else Kind.RENOTIFIED


def _transition(row: int, kind: Kind, ep: np.void, t: float) -> Transition:
    first = float(ep["first_seen"])
    return Transition(
        row=row,
        kind=kind,
        opened_offset=int(ep["opened_offset"]),
        first_seen=first,
        last_seen=first + float(ep["last_seen_s"]),
        occurrences=int(ep["occurrences"]),
        max_level=LEVEL_NAMES[min(int(ep["max_level"]), len(LEVEL_NAMES) - 1)],
        at=t,
    )
