"""change_events (the change path's one-pass event builder) writes the same bytes as the plain
builder: ``build_events`` and ``episode_alert``, as ``score --alerts`` composes them."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import orjson
import pytest

import consumer.scoring.change_batch as change_batch
from consumer.ports import OutputRecord
from consumer.scoring.batch import BatchConfig
from consumer.scoring.change_batch import ChangeContext, process_change_batch
from consumer.scoring.change_events import change_events, feature_dicts
from consumer.scoring.episode_batch import EpisodeContext, episode_alert
from consumer.scoring.episodes import EpisodePolicy, Transition
from consumer.scoring.state.seeds import SnapshotSeeds
from consumer.wire.context import EventContext, ModelLinks
from consumer.wire.events import build_events
from detection import ChangeDetector, parse_updates, train_detector
from detection.change_features import CHANGE_FEATURE_NAMES
from tests.fakes import MemoryChangelog, Rec, foreground_store
from tests.unit.consumer.scoring.state.test_change_parity import message
from tests.unit.detection.test_detector import snapshot_docs

DOCS = snapshot_docs()
NOW = datetime(2026, 12, 1, 12, 0, 0, 250_000, tzinfo=UTC)
CONTEXT = EventContext(max_fields=3, max_bytes=120, links=ModelLinks(None))


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(DOCS)[0])


def records(seed: int, n: int = 1200) -> list[Rec]:
    """Partial updates of snapshot and unknown items, some with attributes and trace headers."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        m = message(rng, k)
        if isinstance(m, dict) and rng.random() < 0.3:
            m |= {"warehouse": f"WH-{k % 4}", "note": "x" * int(rng.integers(0, 200))}
        value = m if isinstance(m, bytes) else orjson.dumps(m)
        headers = [("traceparent", f"00-{k:032x}-01".encode())] if rng.random() < 0.3 else []
        p = int(rng.integers(0, 2))
        out.append(Rec("in", p, 100 + k, 1_764_590_400_000 + 60_000 * k, None, value, headers))
    return out


def plain(args: tuple[Any, ...], kw: dict[str, Any]) -> tuple[list[OutputRecord], list[dict[str, Any]]]:
    """The events as build_events and episode_alert make them (the change path before change_events)."""
    decisions, updates, sources = args
    config, inputs, episodes = kw["config"], kw["inputs"], kw["episodes"]
    outputs: list[OutputRecord] = []
    anomalies: list[dict[str, Any]] = []
    scored = np.ones(len(updates), bool)
    scored[list(decisions.rejected)] = False
    wanted = scored if config.decisions_topic else decisions.is_anomaly & scored
    if episodes is not None and not config.decisions_topic:
        wanted = np.zeros(len(updates), bool)
        wanted[list(episodes)] = True
    rows = np.flatnonzero(wanted)
    if not rows.size:
        return outputs, anomalies
    decisions.complete(rows)
    new, context = decisions.new_values, config.context
    links = context.links(kw["version"])

    def item(i: int) -> dict[str, Any]:
        stock, low, high, price = new[i].tolist()
        return {"item_id": updates.item_ids[i], "event_id": updates.event_ids[i], "stock_quantity": stock,
                "min_stock_level": low, "max_stock_level": high, "price": price}  # fmt: skip

    def attributes(i: int) -> dict[str, Any]:
        return context.attributes(inputs.objs[inputs.where[i]], inputs.used)

    events = build_events(decisions, rows, item_ids=updates.item_ids, event_ids=updates.event_ids,
                          sources=sources, item=item, version=kw["version"], threshold=kw["threshold"],
                          now=kw["now"], feature_names=CHANGE_FEATURE_NAMES, links=links,
                          attributes=attributes)  # fmt: skip
    for i, event, anomaly in events:
        key = event["item_id"].encode()
        if config.decisions_topic:
            outputs.append(OutputRecord(config.decisions_topic, key, orjson.dumps(event)))
        t: Transition | None = episodes.get(i) if episodes is not None else None
        if episodes is not None and t is None:
            continue
        if t is not None:
            state = partial(lambda i: item(i) | attributes(i), i)
            alert = episode_alert(event, anomaly, t, sources[i], item=state, links=links)
        elif anomaly is None:
            continue
        else:
            alert = anomaly
        if anomaly is not None:
            anomalies.append(alert)
        outputs.append(OutputRecord(config.anomaly_topic, key, orjson.dumps(alert), context.headers(sources[i].headers)))  # fmt: skip
    return outputs, anomalies


def wire(outputs: list[OutputRecord], anomalies: list[dict[str, Any]]) -> tuple[list[Any], list[bytes]]:
    return [(o.topic, o.key, o.value, o.headers) for o in outputs], [orjson.dumps(a) for a in anomalies]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("decisions_topic", [None, "decisions"])
@pytest.mark.parametrize("episodes", [None, EpisodeContext(EpisodePolicy(2, renotify_after_s=600))])
def test_change_events_writes_what_the_plain_builder_writes(
    detector: ChangeDetector,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    decisions_topic: str | None,
    episodes: EpisodeContext | None,
) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def spy(*args: Any, **kw: Any) -> None:
        calls.append((args, kw))
        change_events(*args, **kw)

    monkeypatch.setattr(change_batch, "change_events", spy)
    config = BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq", decisions_topic=decisions_topic,
                         context=CONTEXT)  # fmt: skip
    ctx = ChangeContext(foreground_store(MemoryChangelog()), "g.in.state", SnapshotSeeds(DOCS), episodes)
    ctx.restore_for({("in", 0): 0, ("in", 1): 0})
    recs = records(seed)
    for a in range(0, len(recs), 200):  # episodes open in one batch and resolve in a later one
        result = process_change_batch(recs[a : a + 200], detector, ctx, config, now=NOW)
        ctx.published(result)
        ctx.acknowledged(result)
    kinds: set[str] = set()
    for args, kw in calls:
        fast: tuple[list[OutputRecord], list[dict[str, Any]]] = ([], [])
        change_events(*args, **dict(kw, outputs=fast[0], anomalies=fast[1]))
        assert wire(*fast) == wire(*plain(args, kw))
        alerts = [orjson.loads(o.value or b"") for o in fast[0] if o.topic == "anomalies"]
        kinds |= {e.get("status", "every-update") for e in alerts} | {e.get("severity", "") for e in alerts}
    assert kinds >= ({"open", "escalated", "resolved"} if episodes else {"every-update"})
    assert len(kinds & {"low", "medium", "high", "critical"}) >= 2


def test_feature_dicts_name_each_value_in_feature_order() -> None:
    rows = np.random.default_rng(3).normal(size=(5, len(CHANGE_FEATURE_NAMES))).tolist()
    found = feature_dicts(rows)
    assert [list(d.items()) for d in found] == [list(zip(CHANGE_FEATURE_NAMES, r, strict=True)) for r in rows]
