"""The compiled serving loop decides exactly as the numpy reference (generations, state, rules)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detection import parse_updates, train_detector
from detection.decide_reference import decide_batch_reference
from scripts.inventory_sim import SimConfig, simulate
from scripts.warehouse_sim import WarehouseConfig
from scripts.warehouse_sim import simulate as simulate_warehouse


@pytest.mark.parametrize("budget", [0.5, 0.1, 50.0])  # the default; others move alerts, not the state
def test_kernel_and_reference_agree_on_a_simulated_stream(budget: float) -> None:
    snapshot_docs, events, _ = simulate(SimConfig(seed=202, n_items=150, days=6, error_rate=0.05,
                                                  occurred_at_rate=0.7, new_item_share=0.1))  # fmt: skip
    _agree(snapshot_docs, events, budget)


def test_kernel_and_reference_agree_on_a_feed_with_nightly_full_states() -> None:
    """The second generator: partial deltas, repeated full states (the REPEATED bit), replays."""
    snapshot_docs, events, _ = simulate_warehouse(WarehouseConfig(seed=203, n_skus=60, days=10.0, full_sync=1.0,
                                                                  error_rate=0.05, new_share=0.1))  # fmt: skip
    _agree(snapshot_docs, events, 0.5)


def _agree(snapshot_docs: list[dict[str, Any]], events: list[dict[str, Any]], budget: float) -> None:
    snapshot = parse_updates(snapshot_docs)[0]
    updates = parse_updates(events)[0]
    detector = train_detector(snapshot, alert_budget_per_1000=budget)
    fast, slow = detector.baseline(snapshot), detector.baseline(snapshot)
    size = 500  # 150 items: many updates of one item per batch (several generations)
    for a in range(0, len(updates), size):
        b = type(updates)(updates.item_ids[a : a + size], updates.stock[a : a + size], updates.min[a : a + size],
                          updates.max[a : a + size], updates.price[a : a + size],
                          updates.occurred_at[a : a + size], updates.groups[a : a + size],
                          updates.event_ids[a : a + size])  # fmt: skip
        d1, c1 = detector.decide_batch(fast, b)
        d2, c2 = decide_batch_reference(detector, slow, b)
        np.testing.assert_allclose(d1.scores, d2.scores, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(d1.is_anomaly, d2.is_anomaly)
        np.testing.assert_array_equal(d1.rule_bits, d2.rule_bits)
        np.testing.assert_allclose(d1.severity_score, d2.severity_score, atol=1e-6)
        np.testing.assert_allclose(d1.features, d2.features, atol=1e-9)
        assert d1.rejected.keys() == d2.rejected.keys()
        assert dict(c1.packed()) == dict(c2.packed())  # the same records (in another order)
        c1.apply_to(fast)
        c2.apply_to(slow)
        for i in d1.anomaly_indices[:5]:
            assert d1.reasons(int(i)) == d2.reasons(int(i))
    assert dict(fast.items_packed()) == dict(slow.items_packed())


@pytest.mark.parametrize("budget", [0.5, 50.0])
def test_lazy_scoring_decides_the_same_and_scores_on_demand(budget: float) -> None:
    """Lazy decisions leave normal in-hull rows unscored, with every flag and state as the eager
    ones; completing the rows gives the eager scores and severities exactly."""
    snapshot_docs, events, _ = simulate(SimConfig(seed=203, n_items=120, days=5, error_rate=0.05,
                                                  occurred_at_rate=0.7, new_item_share=0.1))  # fmt: skip
    snapshot, updates = parse_updates(snapshot_docs)[0], parse_updates(events)[0]
    detector = train_detector(snapshot, alert_budget_per_1000=budget)
    eager, changes = detector.decide_batch(detector.baseline(snapshot), updates)
    lazy, lazy_changes = detector.decide_batch(detector.baseline(snapshot), updates, lazy=True)
    np.testing.assert_array_equal(lazy.is_anomaly, eager.is_anomaly)
    np.testing.assert_array_equal(lazy.rule_bits, eager.rule_bits)
    np.testing.assert_array_equal(lazy.features, eager.features)
    assert dict(lazy_changes.packed()) == dict(changes.packed())
    scored = np.ones(len(updates), bool)
    scored[list(eager.rejected)] = False
    pending = np.isnan(lazy.scores) & scored
    assert not (pending & lazy.is_anomaly).any()  # every anomaly is scored at once
    if budget == 0.5:  # the default budget: most normal changes lie inside the hull
        assert pending.mean() > 0.5
    some = np.flatnonzero(pending)[::2]
    lazy.complete(some)
    np.testing.assert_array_equal(lazy.scores[some], eager.scores[some])
    assert np.isnan(lazy.scores[np.flatnonzero(pending)[1::2]]).all()  # only the rows asked for
    lazy.complete(np.arange(len(updates)))
    np.testing.assert_array_equal(lazy.scores, eager.scores)
    np.testing.assert_array_equal(lazy.severity_score, eager.severity_score)
