"""``stockwatch score --alerts FILE``: the lines ``consume`` would publish to the anomaly topic.

``--output`` keeps one decision per update (what ``consume`` writes to the decisions topic, and
what issue 11 compares); ``--alerts`` gets the anomaly topic's events for the same input:

* a ``default`` model with ``alert_mode = "episodes"`` (the default; ``STOCKWATCH_ALERT_MODE`` or
  ``--alert-mode``): the ``open`` / ``escalated`` / ``resolved`` events of consume's own episode
  logic (:func:`consumer.scoring.episode_batch.track_episodes`), under the same ``resolve_after``
  and ``renotify_after_s``, each item's episode carried across the whole input in order;
* ``every-update``, and any seed model (as in ``consume``): one anomaly event per anomalous update.

A file line has no record timestamp, so an update without ``occurred_at`` takes the time it is
scored at (``consume`` takes the record's). ``episode_id`` names the file, partition 0 and the
opening line, as ``anomaly_id`` does. Suppressions: none, unless ``--suppressions FILE`` names
JSON lines of suppressions (``stockwatch suppressions list --json``, or Mongo ``suppressions``
documents); those active when the chunk is scored silence episodes exactly as in ``consume``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import IO, Any

import numpy as np
import orjson

from consumer.scoring.episode_batch import EpisodeContext, episode_alert, track_episodes
from consumer.scoring.episodes import EPISODE_DTYPE, EpisodePolicy, Status
from consumer.scoring.suppression_cache import SuppressionCache
from consumer.wire.events import SourceLike
from detection import UpdateBatch
from detection.change_decisions import ChangeDecisions

__all__ = ["AlertSink", "episode_context", "read_suppressions"]

Built = Iterable[tuple[int, dict[str, Any], dict[str, Any] | None]]  # build_events' rows


class AlertSink:
    """Writes the anomaly topic's lines; ``episodes`` None: every anomalous update (``every-update``)."""

    def __init__(self, sink: IO[bytes], episodes: EpisodeContext | None) -> None:
        self.sink, self.episodes = sink, episodes
        self._open: dict[str, bytes] = {}  # item id -> its episode record, while one is open
        self.written = 0

    def write_anomalies(self, events: Built) -> None:
        """``every-update`` and seed models: the anomaly event of each anomalous update."""
        self._write([anomaly for _, _, anomaly in events if anomaly is not None])

    def write_changes(
        self,
        events: Built,
        *,
        updates: UpdateBatch,
        sources: Sequence[SourceLike],
        decisions: ChangeDecisions,
        now: datetime,
        item: Callable[[int], dict[str, Any]],
        links: dict[str, Any] | None,
    ) -> None:
        """One decided chunk of the ``default`` detector (``events`` built for every decided row)."""
        if self.episodes is None:
            self.write_anomalies(events)
            return
        prior = np.zeros(len(updates), EPISODE_DTYPE)
        for r, item_id in enumerate(updates.item_ids):
            record = self._open.get(item_id)
            if record is not None:
                prior[r] = np.frombuffer(record, EPISODE_DTYPE)[0]
        outcome = track_episodes(self.episodes, prior, updates, sources, decisions, now=now)
        for item_id, k in outcome.index.items():  # only open episodes are kept: memory ~ open alerts
            record = outcome.episodes[k]
            if record["status"] == Status.NONE:
                self._open.pop(item_id, None)
            else:
                self._open[item_id] = record.tobytes()
        alerts = []
        for i, event, anomaly in events:
            t = outcome.transitions.get(i)
            if t is not None:
                alerts.append(
                    episode_alert(event, anomaly, t, sources[i], item=partial(item, i), links=links)
                )
        self._write(alerts)

    def _write(self, alerts: list[dict[str, Any]]) -> None:
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        self.sink.write(b"".join(dumps(a, option=newline) for a in alerts))
        self.sink.flush()
        self.written += len(alerts)


def episode_context(
    alert_mode: str, *, resolve_after: int, renotify_after_s: float, suppressions: list[dict[str, Any]]
) -> EpisodeContext | None:
    """consume's :class:`EpisodeContext` for ``alert_mode``, its suppressions loaded once from a file."""
    if alert_mode != "episodes":
        return None
    cache = None
    if suppressions:
        cache = SuppressionCache(lambda: suppressions)
        cache.refresh()  # no refresh thread: the file does not change while score runs
    return EpisodeContext(EpisodePolicy(resolve_after, renotify_after_s), cache)


def read_suppressions(source: IO[bytes]) -> list[dict[str, Any]]:
    """Suppression documents from JSON lines (``suppressions list --json`` rows or stored documents);
    a line that is not one is reported on stderr and skipped."""
    from consumer.wire.suppressions import Suppression

    docs = []
    for lineno, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
            if not isinstance(doc, dict):
                raise TypeError(f"expected a JSON object, got {type(doc).__name__}")
            if "_id" not in doc and doc.get("id") is not None:
                doc["_id"] = doc["id"]  # `suppressions list --json` names the episode `id`
            Suppression.from_doc(doc)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            name = getattr(source, "name", "-")
            why = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc)
            print(
                f"stockwatch: {name}: line {lineno}: not a suppression, skipped: {why[:200]}", file=sys.stderr
            )
            continue
        docs.append(doc)
    return docs
