"""The events of one ``default``-detector batch: decision events and anomaly (or episode) events.

The same events, field for field and byte for byte, as :func:`consumer.wire.events.build_events`
followed by :func:`consumer.scoring.episode_batch.episode_alert` (the plain path ``scan``, ``score``
and ``score --alerts`` use); built here once per event row instead, because the change path makes
about a hundred per poll batch: each array is converted to Python once for all rows, a row's
words (level, reasons, kind, rules) are worded in one pass (:meth:`ChangeDecisions.words`), the
batch's anomaly and episode ids are hashed in one loop each (``anomaly_ids``, ``episode_ids``), and an
event grows in place into its anomaly and episode event (no dict copies) after its decision event
is serialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from consumer.ports import OutputRecord, SourceRecord
from consumer.scoring.batch import BatchConfig
from consumer.scoring.episode_batch import add_transition_fields
from consumer.scoring.episodes import Transition
from consumer.wire.episode_events import episode_ids, prime_event_times
from consumer.wire.events import EVENT_SCHEMA_VERSION, anomaly_ids, detected_at
from detection import UpdateBatch
from detection.change_decisions import ChangeDecisions
from detection.change_features import CHANGE_FEATURE_NAMES

__all__ = ["EventInputs", "change_events"]


@dataclass(frozen=True, slots=True)
class EventInputs:
    """The decoded input of each update (``objs[where[i]]``), read for anomaly events only."""

    objs: Sequence[dict[str, Any]]
    where: Sequence[int]
    used: frozenset[str]  # the keys the detector reads: the rest are the item's attributes


def change_events(
    decisions: ChangeDecisions,
    updates: UpdateBatch,
    sources: Sequence[SourceRecord],
    *,
    threshold: float,
    version: str,
    config: BatchConfig,
    now: datetime,
    inputs: EventInputs,
    episodes: dict[int, Transition] | None,  # alert_mode "episodes": what each row did
    outputs: list[OutputRecord],
    anomalies: list[dict[str, Any]],
) -> None:
    """Append the batch's event records to ``outputs`` (in row order; per row its decision event,
    then its anomaly event) and its anomaly events to ``anomalies``."""
    scored = np.ones(len(updates), bool)
    scored[list(decisions.rejected)] = False
    decided = config.decisions_topic
    wanted = scored if decided else decisions.is_anomaly & scored
    if episodes is not None and not decided:
        wanted = np.zeros(len(updates), bool)
        wanted[list(episodes)] = True
    rows = np.flatnonzero(wanted)
    if not rows.size:
        return
    decisions.complete(rows)  # the scores of the normal rows that become events (resolutions)
    at = rows.tolist()
    flags = decisions.is_anomaly[rows].tolist()
    moved = [None] * len(at) if episodes is None else [episodes.get(i) for i in at]  # each row's transition
    alert = flags if episodes is None else [t is not None for t in moved]  # rows with an anomaly-topic event
    picked = [j for j, a in enumerate(alert) if a]
    news = iter(decisions.new_values[rows[picked]].tolist())
    words = iter(decisions.words([at[j] for j in picked if flags[j]]))
    scores, features = decisions.scores[rows].tolist(), decisions.features[rows].tolist()
    calibrated = decisions.severity_score[rows].tolist()
    context, when, dumps = config.context, detected_at(now), orjson.dumps
    links = context.links(version)
    records = [sources[i] for i in at]
    ids = anomaly_ids(records, version)
    item_ids, event_ids, names = updates.item_ids, updates.event_ids, CHANGE_FEATURE_NAMES
    opened = _episode_ids(moved, records, [item_ids[i] for i in at]) if episodes else {}
    for j, i in enumerate(at):
        record, item_id = records[j], item_ids[i]
        topic, partition, offset = record.topic, record.partition, record.offset
        event: dict[str, Any] = {
            "schema_version": EVENT_SCHEMA_VERSION,
            "anomaly_id": ids[j],
            "item_id": item_id,
            "event_id": event_ids[i],
            "is_anomaly": flags[j],
            "score": scores[j],
            "threshold": threshold,
            "model_version": version,
            "features": dict(zip(names, features[j], strict=True)),
            "source": {
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "timestamp": record.timestamp,
            },
            "detected_at": when,
            "severity_score": round(calibrated[j], 3),
        }
        key = item_id.encode()
        if decided:  # serialised before the event grows into the anomaly event
            outputs.append(OutputRecord(decided, key, dumps(event)))
        if not alert[j]:
            continue
        stock, low, high, price = next(news)
        state = {"item_id": item_id, "event_id": event_ids[i], "stock_quantity": stock,
                 "min_stock_level": low, "max_stock_level": high, "price": price}  # fmt: skip
        state.update(context.attributes(inputs.objs[inputs.where[i]], inputs.used))
        event["item"] = state
        if flags[j]:
            level, reasons, kind, rules = next(words)
            event["severity"], event["reasons"] = level, list(reasons)
            event["kind"], event["rules"] = kind, list(rules)
        event["links"] = dict(links)
        t = moved[j]
        if t is not None:
            add_transition_fields(event, t, opened[j])
        if flags[j]:
            anomalies.append(event)
        outputs.append(OutputRecord(config.anomaly_topic, key, dumps(event), context.headers(record.headers)))


def _episode_ids(
    moved: Sequence[Transition | None], records: Sequence[SourceRecord], item_ids: Sequence[str]
) -> dict[int, str]:
    """The episode id of each event row's transition, by row, all at once; the times their events
    word (first_seen, last_seen, resolved_at) are worded at once too."""
    ts = [(j, t) for j, t in enumerate(moved) if t is not None]
    keys = [(records[j].topic, records[j].partition, t.opened_offset, item_ids[j]) for j, t in ts]
    prime_event_times([x for _, t in ts for x in (t.first_seen, t.last_seen, t.at)])
    return dict(zip([j for j, _ in ts], episode_ids(keys), strict=True))
