"""Quality floors on a small simulated month (a regression net, not the acceptance run)."""

from __future__ import annotations

import time

import pytest

from detection.evaluation import evaluate, format_table
from scripts.inventory_sim import SimConfig, simulate


@pytest.fixture(scope="module")
def results():  # type: ignore[no-untyped-def]
    snapshot, events, labels = simulate(SimConfig(seed=101, n_items=300, days=20, error_rate=0.015))
    t0 = time.perf_counter()
    out = evaluate(snapshot, events, labels)
    assert time.perf_counter() - t0 < 20
    return out


def test_default_beats_the_floors_and_the_seed(results) -> None:  # type: ignore[no-untyped-def]
    seed, default = results["seed"], results["default"]
    assert default.n_errors >= 50
    # floors below the 0.92-0.99 AP, 0.96-0.99 P, 0.91-0.95 R seen on seeds 101-103 of this shape
    assert default.average_precision >= 0.85 and default.roc_auc >= 0.97
    assert default.precision >= 0.85 and default.recall >= 0.8
    assert default.average_precision > 3 * seed.average_precision
    assert default.alerts_per_1000 < seed.alerts_per_1000 / 3


def test_every_error_kind_is_ranked_above_normal_updates(results) -> None:  # type: ignore[no-untyped-def]
    aucs = results["default"].auc_per_kind
    assert len(aucs) >= 10
    assert min(aucs.values()) >= 0.93, aucs


def test_the_table_lists_both_detectors(results) -> None:  # type: ignore[no-untyped-def]
    table = format_table(results)
    assert "seed" in table.splitlines()[0] and "default" in table.splitlines()[0]
    assert "AUC phantom_drop" in table or "AUC negative_stock" in table
