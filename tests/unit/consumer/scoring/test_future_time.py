"""A far-future occurred_at is a dead letter `future_time`: it never becomes the item's clock, so the
item's next normal updates are decided (and its episode resolved) as if it had never come."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest

from consumer.ports import OutputRecord
from consumer.scoring.batch import BatchConfig, BatchResult
from consumer.scoring.change_batch import ChangeContext, process_change_batch
from consumer.scoring.episode_batch import EpisodeContext
from consumer.scoring.episodes import EpisodePolicy
from consumer.scoring.future_time import FutureSafeSeeds, split_future, untime_future
from consumer.scoring.state.seeds import SnapshotSeeds
from consumer.scoring.state.store import StateStore
from consumer.wire.dlq import DLQ_HEADER_REASON
from detection import ChangeDetector, UpdateBatch, parse_updates, train_detector
from tests.fakes import MemoryChangelog, Rec
from tests.schemas import validate
from tests.unit.consumer.scoring.state.stream import snapshot_docs

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
DAY = 86_400.0
ITEM = "sku-3"
T0 = 1_764_590_400  # 2025-12-01T12:00:00Z: the stream lies a year before NOW, like a replay


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs())[0])


def stream(*updates: tuple[float, float]) -> list[Rec]:
    """(stock, occurred_at) updates of ITEM on partition 1, one second apart by record timestamp."""
    return [
        Rec("in", 1, k, 1000 * (T0 + k), ITEM.encode(),
            orjson.dumps({"item_id": ITEM, "event_id": f"e{k}", "stock_quantity": s, "occurred_at": at}), [])
        for k, (s, at) in enumerate(updates)
    ]  # fmt: skip


def decide(detector: ChangeDetector, recs: Sequence[Rec], *, skew_s: float = DAY) -> BatchResult:
    changelog = MemoryChangelog()
    ctx = ChangeContext(
        StateStore(changelog),
        changelog.topic,
        SnapshotSeeds(snapshot_docs()),
        EpisodeContext(EpisodePolicy(resolve_after=3)),
    )
    ctx.restore_for({("in", 1): 0})
    config = BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq", decisions_topic="decisions",
                         future_skew_s=skew_s)  # fmt: skip
    result = process_change_batch(recs, detector, ctx, config, now=NOW)
    ctx.published(result)
    ctx.acknowledged(result)
    return result


def on(topic: str, outputs: Sequence[OutputRecord]) -> list[OutputRecord]:
    return [o for o in outputs if o.topic == topic]


def test_a_far_future_update_is_a_dead_letter_and_the_next_normal_updates_resolve_the_episode(
    detector: ChangeDetector,
) -> None:
    years_ahead = T0 + 10 * 365 * DAY
    recs = stream(
        (20, T0), (-5, T0 + 1), (-6, T0 + 2), (21, years_ahead), (22, T0 + 4), (23, T0 + 5), (24, T0 + 6)
    )
    result = decide(detector, recs)
    letters = on("dlq", result.outputs)
    assert len(letters) == 1 and letters[0].value == recs[3].value and letters[0].key == recs[3].key
    headers = dict(letters[0].headers or [])
    assert headers[DLQ_HEADER_REASON] == b"future_time"
    assert b"2035-" in headers["dlq.error"] and b"future_skew_s" in headers["dlq.error"]
    validate("dlq-headers", {k: v.decode() for k, v in letters[0].headers or []})
    assert result.dlq_reasons == {"future_time": 1}
    decisions = [orjson.loads(o.value or b"") for o in on("decisions", result.outputs)]
    assert [d["source"]["offset"] for d in decisions] == [0, 1, 2, 4, 5, 6]  # all but the refused one
    assert not any("out_of_order" in (d.get("rules") or []) for d in decisions)
    episodes = [orjson.loads(o.value or b"") for o in on("anomalies", result.outputs)]
    assert [(e["status"], e["source"]["offset"]) for e in episodes] == [("open", 1), ("resolved", 6)]


def test_without_the_guard_the_same_stream_freezes_the_item(detector: ChangeDetector) -> None:
    """What the guard prevents (a skew longer than the ten years lets the update through)."""
    years_ahead = T0 + 10 * 365 * DAY
    recs = stream(
        (20, T0), (-5, T0 + 1), (-6, T0 + 2), (21, years_ahead), (22, T0 + 4), (23, T0 + 5), (24, T0 + 6)
    )
    result = decide(detector, recs, skew_s=100 * 365 * DAY)
    assert on("dlq", result.outputs) == []
    episodes = [orjson.loads(o.value or b"") for o in on("anomalies", result.outputs)]
    assert [e["status"] for e in episodes] == ["open"]  # never resolved: the later updates look old


def test_the_reference_is_the_wall_clock_whatever_the_record_timestamp_says(detector: ChangeDetector) -> None:
    now = NOW.timestamp()
    at = (now - 30 * DAY, now + 0.5 * DAY, now + 2 * DAY)  # a day's skew: the last one is refused
    for stamp in (1000 * int(now + 30 * DAY), 1000, None):  # a CreateTime ahead, a clock at 1970, none
        recs = [r._replace(timestamp=stamp) for r in stream(*((20 + k, a) for k, a in enumerate(at)))]
        result = decide(detector, recs)
        assert [o.value for o in on("dlq", result.outputs)] == [recs[2].value], stamp
        assert [
            orjson.loads(o.value or b"")["source"]["offset"] for o in on("decisions", result.outputs)
        ] == [0, 1]


def test_split_future_never_refuses_an_update_without_occurred_at() -> None:
    now = NOW.timestamp()
    keep, rejects = split_future(columns(4, [now, np.nan, now + 2 * DAY, now + DAY]), now + DAY)
    assert keep == [0, 1, 3]
    assert [i for i, _ in rejects] == [2] and rejects[0][1].startswith("future_time: occurred_at 2026-12-03")


def test_nothing_ahead_keeps_the_batch_as_it_is() -> None:
    batch = columns(2, [NOW.timestamp(), np.nan])
    assert split_future(batch, NOW.timestamp() + DAY) == (None, [])


def columns(n: int, times: Any) -> UpdateBatch:
    ones = np.ones(n)
    return UpdateBatch.from_columns([f"i{k}" for k in range(n)], stock=ones, min_=ones, max_=ones,
                                    price=ones, occurred_at=times)  # fmt: skip


def seeded_decisions(detector: ChangeDetector, seed_at: float | None, *, guard: bool) -> list[dict[str, Any]]:
    """ITEM's updates at T0.. decided against an inventory seed stamped ``seed_at`` (None: no time)."""
    docs = [dict(d) for d in snapshot_docs()]
    for d in docs:
        d.pop("occurred_at", None)
        if d["item_id"] == ITEM and seed_at is not None:
            d["occurred_at"] = seed_at
    seeds: Any = SnapshotSeeds(docs)
    if guard:
        seeds = FutureSafeSeeds(seeds, DAY, clock=NOW.timestamp)
    changelog = MemoryChangelog()
    ctx = ChangeContext(StateStore(changelog), changelog.topic, seeds)
    ctx.restore_for({("in", 1): 0})
    config = BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq", decisions_topic="decisions")
    result = process_change_batch(
        stream((20, T0), (19, T0 + 60), (18, T0 + 120)), detector, ctx, config, now=NOW
    )
    return [orjson.loads(o.value or b"") for o in on("decisions", result.outputs)]


def test_an_inventory_seed_stamped_years_ahead_starts_with_no_time(
    detector: ChangeDetector, caplog: pytest.LogCaptureFixture
) -> None:
    """The seed keeps its numbers but not its clock: decided as if it carried no occurred_at."""
    years_ahead = T0 + 10 * 365 * DAY
    untimed = seeded_decisions(detector, None, guard=True)
    assert seeded_decisions(detector, years_ahead, guard=True) == untimed
    assert "1 inventory seed(s) stamped more than future_skew_s ahead" in caplog.text
    unguarded = seeded_decisions(detector, years_ahead, guard=False)
    assert any(d["is_anomaly"] for d in unguarded)  # what the guard prevents: its updates look old
    assert not any(d["is_anomaly"] for d in untimed)


def test_untime_future_keeps_seeds_within_the_skew_and_those_without_time() -> None:
    now = NOW.timestamp()
    batch = columns(4, [now, np.nan, now + 2 * DAY, now + DAY])
    kept, n = untime_future(batch, now + DAY)
    assert n == 1
    np.testing.assert_array_equal(kept.occurred_at, [now, np.nan, np.nan, now + DAY])
    assert batch.occurred_at[2] == now + 2 * DAY  # the caller's batch is not changed
    assert untime_future(kept, now + DAY) == (kept, 0)
