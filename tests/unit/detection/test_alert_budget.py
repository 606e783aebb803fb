"""The alert budget does what it says over its whole range: more budget, more alerts, about B per 1,000."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from detection import ChangeDetector, parse_updates, train_detector
from detection.normal_motion import normal_transitions
from detection.updates import UpdateBatch
from scripts.inventory_sim import SimConfig, simulate

Models = dict[float, ChangeDetector]
BUDGETS = (0.5, 5.0, 50.0, 200.0)  # below and far above the share of normal motion beyond the hull


@pytest.fixture(scope="module")
def data() -> tuple[UpdateBatch, UpdateBatch, np.ndarray[Any, Any]]:
    items, events, labels = simulate(SimConfig(seed=77, n_items=300, days=10, error_rate=0.01))
    snapshot, updates = parse_updates(items)[0], parse_updates(events)[0]
    errors = np.array([bool(labels.get(e or "")) for e in updates.event_ids])
    return snapshot, updates, errors


@pytest.fixture(scope="module")
def models(data: tuple[UpdateBatch, UpdateBatch, np.ndarray[Any, Any]]) -> Models:
    return {b: train_detector(data[0], alert_budget_per_1000=b) for b in BUDGETS}


def model_alerts(model: ChangeDetector, snapshot: UpdateBatch, updates: UpdateBatch) -> np.ndarray[Any, Any]:
    """Per update of the replay (in order, with state): alerted by the model (not by a rule)."""
    table = model.baseline(snapshot)
    decisions, changes = model.decide_batch(table, updates)
    changes.apply_to(table)
    by_rule = (decisions.rule_bits & decisions.rules.alert_mask) != 0
    result: np.ndarray[Any, Any] = decisions.is_anomaly & ~by_rule
    return result


def test_fresh_normal_motion_alerts_at_about_the_budget(data: Any, models: Models) -> None:
    table = models[BUDGETS[0]].baseline(data[0])
    start = table.gather(np.arange(len(table)))
    rates = []
    for b, model in models.items():
        # fresh motion: another rng than training's
        fresh, _ = normal_transitions(start, model.peers, np.random.default_rng(31), 64)
        rates.append(1000.0 * float(np.mean(model.score(fresh) < model.threshold)))
        if b >= 5.0:  # enough expected alerts in 19,200 updates for a factor to mean something
            # within the share beyond the hull the hull's own range, fitted on the training rows,
            # is the loose part (fresh rows land beyond it more often); above it, the forest's order
            assert b / 3 < rates[-1] < (3 * b if b < 50.0 else 1.5 * b)
    assert rates == sorted(rates) and rates[-1] > rates[1]


def test_false_alerts_on_a_replay_grow_with_the_budget(data: Any, models: Models) -> None:
    snapshot, updates, errors = data
    alerts = {b: model_alerts(m, snapshot, updates) for b, m in models.items()}
    false_per_1000 = [1000.0 * float((a & ~errors).sum()) / float((~errors).sum()) for a in alerts.values()]
    assert false_per_1000 == sorted(false_per_1000)
    assert false_per_1000[1] < false_per_1000[2] < false_per_1000[3]
    for b, rate in zip(BUDGETS[2:], false_per_1000[2:], strict=True):
        assert b / 4 < rate < 2 * b  # the simulator's normal motion is calmer than the training priors
    # the state follows the same flags at every budget, so a larger budget only adds alerts
    for low, high in pairwise(BUDGETS):
        assert not (alerts[low] & ~alerts[high]).any()
    assert (alerts[BUDGETS[-1]] & errors).sum() > (alerts[BUDGETS[0]] & errors).sum()  # more recall
