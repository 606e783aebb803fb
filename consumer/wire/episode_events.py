"""The fields alert episodes add to anomaly events, and the episode id — pure, no I/O.

``alert_mode = "episodes"`` publishes, per item, one ``open`` event when an episode starts, an
``escalated`` one when its severity rises a level, the ``open`` event again with
``renotified: true`` after ``renotify_after_s``, and one ``resolved`` event when it ends (see
:mod:`consumer.scoring.episodes`). Each is the event the builder makes for the update that caused
it, plus :func:`episode_fields`. ``anomaly_id`` stays the id of that update's decision; the
``episode_id`` is the same for every event of one episode.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, Literal

__all__ = ["EPISODE_ID_HEX_CHARS", "EpisodeStatus", "episode_fields", "episode_id", "event_time"]

EPISODE_ID_HEX_CHARS: Final = 32
EpisodeStatus = Literal["open", "escalated", "resolved"]


def episode_id(topic: str, partition: int, opened_offset: int, item_id: str) -> str:
    """Deterministic id of the episode an item's update at ``topic[partition]@opened_offset`` opened.

    Input coordinates, not time or model version: a replay of the same records (after kill -9 or
    a rebalance) names the same episode; the ``episode`` prefix keeps it apart from any anomaly_id.
    """
    raw = f"episode\x1f{topic}\x1f{partition}\x1f{opened_offset}\x1f{item_id}".encode()
    return hashlib.sha256(raw).hexdigest()[:EPISODE_ID_HEX_CHARS]


@lru_cache(maxsize=1024)  # an open event's first_seen is its last_seen; an episode's events repeat it
def event_time(seconds: float) -> str:
    """Epoch seconds as UTC ISO 8601 with ``Z`` (millisecond precision)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def episode_fields(
    *,
    status: EpisodeStatus,
    episode: str,
    first_seen: float,
    last_seen: float,
    occurrences: int,
    max_severity: str,
    renotified: bool = False,
    resolved_at: float | None = None,
) -> dict[str, Any]:
    """What an episode adds to the event of the update that opened, escalated or resolved it."""
    fields: dict[str, Any] = {
        "status": status,
        "episode_id": episode,
        "first_seen": event_time(first_seen),
        "last_seen": event_time(last_seen),
        "occurrences": occurrences,
        "max_severity": max_severity,
    }
    if renotified:
        fields["renotified"] = True
    if resolved_at is not None:
        fields["resolved_at"] = event_time(resolved_at)
        fields["duration_s"] = round(max(0.0, resolved_at - first_seen), 3)
    return fields
