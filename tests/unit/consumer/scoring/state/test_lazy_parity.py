"""The consume path's lazy scoring publishes what the eager decisions publish, byte for byte.

``process_change_batch`` decides with ``lazy=True`` (normal changes inside the hull skip their
forest walk until an output needs their score). The same stream through the same detector with
lazy scoring off (``_lazy_ok`` False: every row scored in the kernel) must give the same outputs
(anomaly, decision and changelog records), counters and staged state, in every alert mode, with
and without a decisions topic and suppressions, on both simulators and at budgets on both sides
of the lazy guarantee.
"""

from __future__ import annotations

import copy
import re
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest

from consumer.scoring.batch import BatchConfig, BatchResult
from consumer.scoring.change_batch import ChangeContext, process_change_batch
from consumer.scoring.episode_batch import EpisodeContext
from consumer.scoring.episodes import EpisodePolicy
from consumer.scoring.state.seeds import SnapshotSeeds
from consumer.scoring.suppression_cache import SuppressionCache
from consumer.wire.suppressions import suppression_from_feedback
from detection import ChangeDetector, parse_updates, train_detector
from scripts.inventory_sim import SimConfig
from scripts.inventory_sim import simulate as inventory
from scripts.warehouse_ops import WarehouseConfig
from scripts.warehouse_sim import simulate as warehouse
from tests.fakes import MemoryChangelog, Rec, foreground_store

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)  # after every simulated occurred_at
BATCH = 400
PACK = re.compile(rb"\x00stockwatch\.pack\.[0-9a-f]{24}")  # a random key per changelog pack
Docs = list[dict[str, Any]]
Stream = tuple[Docs, Docs, dict[str, str]]  # snapshot, events, labels (event id -> error kind)


def _inventory() -> Stream:
    return inventory(SimConfig(seed=11, n_items=120, days=6, error_rate=0.08, more_errors=True, tiny_share=0.2,
                               occurred_at_rate=0.6, new_item_share=0.15, burst_rate=0.1, return_rate=0.05))  # fmt: skip


def _warehouse() -> Stream:
    cfg = WarehouseConfig(seed=12, n_skus=60, days=7, error_rate=0.06, new_share=0.15, full_sync=0.5)
    return warehouse(cfg)


STREAMS: dict[str, Callable[[], Stream]] = {"inventory": _inventory, "warehouse": _warehouse}


def records(events: Docs) -> list[Rec]:
    """The events as input records, each item always in the same of two partitions."""
    out = []
    for k, e in enumerate(events):
        key, value = e["item_id"].encode(), orjson.dumps(e, option=orjson.OPT_SERIALIZE_NUMPY)
        headers = [("traceparent", b"00-%032x-01" % k)] if k % 5 == 0 else []
        out.append(Rec("in", zlib.crc32(key) % 2, k, 1_780_000_000_000 + 1000 * k, key, value, headers))
    return out


def suppressions(events: Docs, labels: dict[str, str]) -> SuppressionCache:
    """Suppressions of some of the items with reporting errors: any reason, or the stock only."""
    items = list(dict.fromkeys(e["item_id"] for e in events if e.get("event_id") in labels))[::2]
    docs = [suppression_from_feedback(episode_id=f"{k:032x}", item_id=item, suppress_for_s=10**9,
                                      when=NOW - timedelta(days=400), reason="stock" if k % 2 else None).as_doc()
            for k, item in enumerate(items)]  # fmt: skip
    cache = SuppressionCache(lambda: docs)
    assert cache.refresh(NOW)
    return cache


def run(detector: ChangeDetector, snapshot: Docs, recs: list[Rec], episodes: EpisodeContext | None,
        config: BatchConfig) -> list[Any]:  # fmt: skip
    """Every output (pack keys normalised), counter and staged state of the stream, batch by batch."""
    ctx = ChangeContext(foreground_store(MemoryChangelog()), "g.in.state", SnapshotSeeds(snapshot), episodes)
    ctx.restore_for({("in", 0): 0, ("in", 1): 0})
    out: list[Any] = []
    for a in range(0, len(recs), BATCH):
        result: BatchResult = process_change_batch(recs[a : a + BATCH], detector, ctx, config, now=NOW)
        ctx.published(result)
        ctx.acknowledged(result)
        out += [(o.topic, o.key and PACK.sub(b"<pack>", o.key), o.value and PACK.sub(b"<pack>", o.value), o.headers)
                for o in result.outputs]  # fmt: skip
        out.append(
            ("counts", result.n_in, result.n_valid, result.n_anomalies, result.dlq_reasons, result.suppressed)
        )
        assert result.state is not None
        out += [(p, ids, recs_.tobytes(), offs.tobytes())
                for p, (ids, recs_, offs) in sorted(result.state.by_partition.items())]  # fmt: skip
    return out


@pytest.fixture(scope="module", params=sorted(STREAMS))
def stream(request: pytest.FixtureRequest) -> Stream:
    return STREAMS[request.param]()


@pytest.mark.parametrize("budget", [0.5, 3.0])  # the default and a larger one, both lazy
def test_lazy_consume_path_publishes_what_the_eager_one_does(stream: Stream, budget: float) -> None:
    snapshot, events, labels = stream
    lazy = train_detector(parse_updates(snapshot)[0], alert_budget_per_1000=budget)
    assert lazy._lazy_ok  # at these budgets no score inside the hull alerts
    eager = copy.copy(lazy)
    object.__setattr__(eager, "_lazy_ok", False)  # every row scored in the kernel
    recs = records(events)
    plain = BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq")
    with_decisions = BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq", decisions_topic="decisions")
    policy = EpisodePolicy(resolve_after=2)
    statuses, suppressed = set(), 0
    for episodes in (None, EpisodeContext(policy), EpisodeContext(policy, suppressions(events, labels))):
        for config in (plain, with_decisions):
            want = run(eager, snapshot, recs, episodes, config)
            assert run(lazy, snapshot, recs, episodes, config) == want
            published = [orjson.loads(r[2]) for r in want if r[0] in ("anomalies", "decisions")]
            assert published and all(np.isfinite([e["score"], e["severity_score"]]).all() for e in published)
            statuses |= {e.get("status") for e in published}
            suppressed += sum(r[5] for r in want if r[0] == "counts")
    assert {"open", "resolved"} <= statuses  # resolutions: normal rows that become events
    assert suppressed > 0
