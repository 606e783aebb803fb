"""The events of one ``default``-detector batch: decision events and anomaly (or episode) events.

The same events, field for field and byte for byte, as :func:`consumer.wire.events.build_events`
followed by :func:`consumer.scoring.episode_batch.episode_alert` (the plain path ``scan``, ``score``
and ``score --alerts`` use); built here once per event row instead, because the change path makes
about a hundred per poll batch: each array is converted to Python once for all rows, a row's
words (level, reasons, kind, rules) are worded in one pass (:meth:`ChangeDecisions.words`), the
batch's anomaly and episode ids are hashed in one loop each (``anomaly_ids``, ``episode_ids``), its
episode fields built in one pass (``batch_transition_fields``), and an event grows in place into its
anomaly and episode event (no dict copies) after its decision event is serialised.
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
from consumer.scoring.episode_batch import batch_transition_fields
from consumer.scoring.episodes import Transition
from consumer.wire.episode_events import episode_ids
from consumer.wire.events import EVENT_SCHEMA_VERSION, anomaly_ids, detected_at
from detection import UpdateBatch
from detection.change_decisions import ChangeDecisions

__all__ = ["EventInputs", "change_events", "feature_dicts"]


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
    scores, features = decisions.scores[rows].tolist(), feature_dicts(decisions.features[rows].tolist())
    calibrated = decisions.severity_score[rows].tolist()
    context, when, dumps = config.context, detected_at(now), orjson.dumps
    links = context.links(version)
    records = [sources[i] for i in at]
    ids = anomaly_ids(records, version)
    item_ids, event_ids = updates.item_ids, updates.event_ids
    keyed = [item_ids[i] for i in at]
    grown = _episode_fields(moved, records, keyed) if episodes else {}
    used, objs, where, anomaly_topic = inputs.used, inputs.objs, inputs.where, config.anomaly_topic
    for j, i in enumerate(at):
        record, item_id, event_id = records[j], keyed[j], event_ids[i]
        event: dict[str, Any] = {
            "schema_version": EVENT_SCHEMA_VERSION,
            "anomaly_id": ids[j],
            "item_id": item_id,
            "event_id": event_id,
            "is_anomaly": flags[j],
            "score": scores[j],
            "threshold": threshold,
            "model_version": version,
            "features": features[j],
            "source": {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
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
        obj = objs[where[i]]
        event["item"] = (
            {"item_id": item_id, "event_id": event_id, "stock_quantity": stock, "min_stock_level": low,
             "max_stock_level": high, "price": price, "attributes": {}, "attributes_truncated": False}
            if used.issuperset(obj)  # the usual: nothing but what the detector reads
            else {"item_id": item_id, "event_id": event_id, "stock_quantity": stock, "min_stock_level": low,
                  "max_stock_level": high, "price": price} | context.attributes(obj, used)
        )  # fmt: skip
        if flags[j]:
            level, reasons, kind, rules = next(words)
            event["severity"], event["reasons"] = level, list(reasons)
            event["kind"], event["rules"] = kind, list(rules)
        event["links"] = links.copy()
        if j in grown:
            event.update(grown[j])
        if flags[j]:
            anomalies.append(event)
        headers = record.headers
        outputs.append(
            OutputRecord(anomaly_topic, key, dumps(event), context.headers(headers) if headers else [])
        )


def feature_dicts(rows: list[list[float]]) -> list[dict[str, float]]:
    """Each row's features by name (:data:`CHANGE_FEATURE_NAMES`, in order): a dict literal builds in
    half the time of ``dict(zip(...))``."""
    return [{"stock_vs_max": a, "stock_step": b, "drop_vs_usual": c, "rise_vs_usual": d, "price_step": e,
             "price_vs_ref": f, "price_vs_peers": g, "min_step": h, "max_step": i, "min_vs_max": j,
             "gap_vs_usual": k} for a, b, c, d, e, f, g, h, i, j, k in rows]  # fmt: skip


def _episode_fields(
    moved: Sequence[Transition | None], records: Sequence[SourceRecord], item_ids: Sequence[str]
) -> dict[int, dict[str, Any]]:
    """The episode fields of each event row's transition, by row, all at once (ids hashed in one
    loop, times worded in one pass)."""
    ts = [(j, t) for j, t in enumerate(moved) if t is not None]
    keys = [(records[j].topic, records[j].partition, t.opened_offset, item_ids[j]) for j, t in ts]
    fields = batch_transition_fields([t for _, t in ts], episode_ids(keys))
    return dict(zip([j for j, _ in ts], fields, strict=True))
