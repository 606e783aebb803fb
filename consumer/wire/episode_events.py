"""The fields alert episodes add to anomaly events, and the episode id — pure, no I/O.

``alert_mode = "episodes"`` publishes, per item, one ``open`` event when an episode starts, an
``escalated`` one when its severity rises a level, the ``open`` event again with
``renotified: true`` after ``renotify_after_s``, and one ``resolved`` event when it ends (see
:mod:`consumer.scoring.episodes`). Each is the event the builder makes for the update that caused
it, plus :func:`add_episode_fields`. ``anomaly_id`` stays the id of that update's decision; the
``episode_id`` is the same for every event of one episode.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

import numpy as np

__all__ = [
    "EPISODE_ID_HEX_CHARS",
    "EpisodeStatus",
    "add_episode_fields",
    "episode_id",
    "episode_ids",
    "event_time",
    "event_times",
    "prime_event_times",
]

EPISODE_ID_HEX_CHARS: Final = 32
EpisodeStatus = Literal["open", "escalated", "resolved"]


def episode_id(topic: str, partition: int, opened_offset: int, item_id: str) -> str:
    """Deterministic id of the episode an item's update at ``topic[partition]@opened_offset`` opened.

    Input coordinates, not time or model version: a replay of the same records (after kill -9 or
    a rebalance) names the same episode; the ``episode`` prefix keeps it apart from any anomaly_id.
    """
    raw = f"episode\x1f{topic}\x1f{partition}\x1f{opened_offset}\x1f{item_id}".encode()
    return hashlib.sha256(raw).hexdigest()[:EPISODE_ID_HEX_CHARS]


def episode_ids(opened: Iterable[tuple[str, int, int, str]]) -> list[str]:
    """:func:`episode_id` of each ``(topic, partition, opened_offset, item_id)``: no call per id."""
    sha = hashlib.sha256
    return [sha(f"episode\x1f{topic}\x1f{p}\x1f{offset}\x1f{item}".encode()).hexdigest()[:EPISODE_ID_HEX_CHARS]
            for topic, p, offset, item in opened]  # fmt: skip


# event_time's memo: an open event's first_seen is its last_seen; an episode's events repeat it
_TIMES: dict[float, str] = {}
_MEMO: Final = 4096
_MILLIS: Final = [f".{m:03d}Z" for m in range(1000)]  # a time's tail after its second
_SAFE: Final = (-62135596800.0, 253402300798.0)  # year 1 .. a second before datetime's end: no range error


def event_time(seconds: float) -> str:
    """Epoch seconds as UTC ISO 8601 with ``Z`` (millisecond precision)."""
    said = _TIMES.get(seconds)
    if said is None:
        moment = datetime.fromtimestamp(seconds, UTC)
        said = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if len(_TIMES) >= _MEMO:
            _TIMES.clear()
        _TIMES[seconds] = said
    return said


def prime_event_times(seconds: Iterable[float]) -> None:
    """Word the times a batch's episode events will ask :func:`event_time` for in one numpy pass (the
    same text: ``datetime.fromtimestamp``'s microsecond rounding, half to even, then milliseconds)."""
    distinct = {s for s in seconds if s not in _TIMES}  # a batch asks ~3 times per distinct time
    new = np.fromiter(distinct, np.float64, count=len(distinct))
    new = new[(new >= _SAFE[0]) & (new <= _SAFE[1])]  # NaN fails both: event_time says why
    if not new.size:
        return
    frac, whole = np.modf(new)
    micros = np.rint(frac * 1e6)  # as CPython's _PyTime_DoubleToDenominator, then its carry
    up, down = micros >= 1e6, micros < 0
    whole, micros = whole + up - down, micros - 1e6 * up + 1e6 * down
    secs = whole.astype(np.int64)
    ms = (micros // 1000).astype(np.int64).tolist()
    # a batch's times fall in a few seconds: each second worded once (numpy's text is ~0.3 µs a time)
    unique = np.unique(secs)
    words = np.datetime_as_string(unique.astype("datetime64[s]"), unit="s").tolist()
    second = dict(zip(unique.tolist(), words, strict=True))
    text = [second[w] + _MILLIS[m] for w, m in zip(secs.tolist(), ms, strict=True)]  # ~4x an f-string
    if len(_TIMES) + len(text) > _MEMO:
        _TIMES.clear()
    _TIMES.update(zip(new.tolist(), text, strict=True))


def event_times(seconds: Sequence[float]) -> list[str]:
    """:func:`event_time` of each of ``seconds``, worded in one pass (:func:`prime_event_times`)."""
    prime_event_times(seconds)
    said = _TIMES.get
    return [said(s) or event_time(s) for s in seconds]  # not primed: out of range, event_time says why


def add_episode_fields(
    event: dict[str, Any],
    *,
    status: EpisodeStatus,
    episode: str,
    first_seen: float,
    last_seen: float,
    occurrences: int,
    max_severity: str,
    renotified: bool = False,
    resolved_at: float | None = None,
) -> None:
    """What an episode adds to the event of the update that opened, escalated or resolved it,
    written into ``event`` (no dict per event)."""
    event["status"] = status
    event["episode_id"] = episode
    event["first_seen"] = event_time(first_seen)
    event["last_seen"] = event_time(last_seen)
    event["occurrences"] = occurrences
    event["max_severity"] = max_severity
    if renotified:
        event["renotified"] = True
    if resolved_at is not None:
        event["resolved_at"] = event_time(resolved_at)
        event["duration_s"] = round(max(0.0, resolved_at - first_seen), 3)
