"""Changes beyond the hull of normal motion rank first; inside it the forest orders them; the budget cuts."""

from __future__ import annotations

import numpy as np
import pytest

from detection import ChangeDetector, parse_updates, train_detector
from detection.detector import INSIDE_SHIFT, gate
from detection.detector_training import budget_offset
from detection.hull import Hull
from tests.unit.detection.test_detector import decide, snapshot_docs


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs(seed=4))[0])


def test_the_hull_spans_the_moves_of_a_feature_that_rarely_moves() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((100_000, 2))
    moves = rng.random(100_000) < 0.005  # a level re-plan on 0.5 % of updates
    x[moves, 0] = np.log(rng.uniform(0.8, 1.3, int(moves.sum())))
    x[:, 1] = rng.normal(0.0, 1.0, 100_000)  # a feature that always moves
    hull = Hull.fit(x, [1.0, 1.0])
    assert hull.low[0] < np.log(0.82) and hull.high[0] > np.log(1.28)  # over all rows: ~0 and ~0.2
    assert hull.low[1] == pytest.approx(np.quantile(x[:, 1], 0.001), abs=0.05)
    assert float(hull.penalty(np.array([[np.log(1.25), 0.0]]))[0]) == 0.0


def test_at_the_default_budget_nothing_inside_the_hull_alerts_and_the_forest_still_orders(
    detector: ChangeDetector,
) -> None:
    meta = detector.metadata
    low, high = np.array(meta.hull_low), np.array(meta.hull_high)
    rng = np.random.default_rng(1)
    inside = rng.uniform(low, high, (5000, len(low)))
    s_in = detector.score(inside)
    assert (s_in > 0).all()
    beyond = inside.copy()
    beyond[:, 1] = high[1] + rng.uniform(0.01, 3.0, 5000) * (high[1] - low[1])
    s_out = detector.score(beyond)
    assert s_out.max() < s_in.min()  # every change beyond the hull ranks above every change inside
    assert (s_out < 0).mean() > 0.5  # and far beyond, the model alerts
    raw = gate(np.array([-0.3, -0.1, 0.2]), np.zeros(3))
    np.testing.assert_allclose(raw, np.array([-0.3, -0.1, 0.2]) + INSIDE_SHIFT)  # order kept


def test_the_budget_takes_rows_beyond_the_hull_first_then_inside_it_by_forest_score() -> None:
    rng = np.random.default_rng(3)
    raw = rng.uniform(-0.8, -0.3, 1000)  # forest scores
    pen = np.zeros(1000)
    pen[:20] = rng.uniform(0.01, 1.0, 20)  # 2 % of the rows lie beyond the hull
    raw[:20] -= pen[:20]
    for budget in (0.005, 0.05, 0.3):
        flagged = gate(raw, pen) < budget_offset(raw, pen, budget)
        assert flagged.sum() == int(budget * 1000)  # the budget's share of the rows, whatever it is
        if budget < 0.02:  # fewer than lie beyond: only rows beyond, the lowest scores among them
            assert not flagged[20:].any() and raw[:20][flagged[:20]].max() < raw[:20][~flagged[:20]].min()
        else:  # every row beyond, then the inside rows the forest finds rarest
            assert flagged[:20].all() and raw[20:][flagged[20:]].max() < raw[20:][~flagged[20:]].min()
    no_beyond = gate(raw, np.zeros(1000)) < budget_offset(raw, np.zeros(1000), 0.01)
    assert no_beyond.sum() == 10  # none beyond: the budget still holds, by forest score


def test_another_state_at_the_latest_time_is_a_replay(detector: ChangeDetector) -> None:
    docs = snapshot_docs(seed=4)
    table = detector.baseline(parse_updates(docs)[0])
    s = docs[3]["stock_quantity"]
    at = "2026-03-02T10:00:00Z"
    first = decide(detector, table, {"item_id": "sku-3", "stock_quantity": s - 1, "occurred_at": at})
    assert not first.is_anomaly[0]
    replay = decide(detector, table, {"item_id": "sku-3", "stock_quantity": s, "occurred_at": at})
    # a rise no receipt explains that restores the stock before the first update: a replay
    assert replay.rules_fired(0) == ("same_time_other_state", "same_time_revert", "reverted_stock")
    assert replay.kind(0) == "data_quality"
    later = decide(detector, table, {"item_id": "sku-3", "stock_quantity": s - 2, "occurred_at": "2026-03-02T11:00:00Z"})  # fmt: skip
    assert not later.is_anomaly[0]


def test_a_revert_without_times_is_a_hint_and_an_older_one_alerts(detector: ChangeDetector) -> None:
    docs = snapshot_docs(seed=4)
    table = detector.baseline(parse_updates(docs)[0])
    s = docs[3]["stock_quantity"]
    decide(detector, table, {"item_id": "sku-3", "stock_quantity": s - 1})
    again = decide(detector, table, {"item_id": "sku-3", "stock_quantity": s})  # the first report re-sent
    assert again.rules_fired(0) == ("reverted_stock",)
    assert not again.is_anomaly[0] and again.kind(0) == "none"
    assert again.severity_score[0] == 45.0  # ranked above ordinary updates, not alerted
    at = "2026-03-02T10:00:00Z"
    decide(detector, table, {"item_id": "sku-3", "stock_quantity": s - 3, "occurred_at": at})
    late = decide(detector, table, {"item_id": "sku-3", "stock_quantity": s, "occurred_at": "2026-03-02T09:59:30Z"})  # fmt: skip
    assert late.rules_fired(0) == ("replayed_stock", "reverted_stock", "out_of_order")
    assert late.is_anomaly[0] and late.kind(0) == "data_quality" and late.severity_score[0] >= 85.0
