"""The promotion gate: degenerate snapshots, rate band, drift against the current model."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.retraining.gate import GateConfig, check_snapshot, evaluate, ks_distance
from detection import ForestParams, train_model
from detection.features import feature_matrix
from detection.items import StockItem, parse_item


def make_items(n: int, seed: int, planted: float = 0.0) -> list[StockItem]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lo = float(rng.integers(10, 60))
        hi = lo + float(rng.integers(100, 300))
        stock, price = float(rng.integers(int(lo), int(hi))), float(rng.uniform(1, 50))
        if rng.random() < planted:
            stock, price = float(rng.integers(20_000, 90_000)), float(rng.uniform(500, 2000))
        out.append(
            parse_item(
                {
                    "item_id": f"i{i}",
                    "stock_quantity": stock,
                    "min_stock_level": lo,
                    "max_stock_level": hi,
                    "price": price,
                }
            )
        )
    return out


@pytest.fixture(scope="module")
def current() -> object:
    return train_model(make_items(400, 1))


def test_identical_items_are_a_degenerate_snapshot() -> None:
    x = np.tile(np.array([[100.0, 2.0, 0.3, 1000.0, 10.0, 50.0, 200.0]]), (50, 1))
    result = check_snapshot(x)
    assert not result.passed
    assert "degenerate" in result.reasons[0]


def test_too_few_items_is_refused() -> None:
    result = check_snapshot(np.ones((9, 7)))
    assert not result.passed and "too few" in result.reasons[0]


def test_a_fresh_clean_candidate_passes(current: object) -> None:
    items = make_items(400, 2)
    candidate = train_model(items)
    sample = feature_matrix(make_items(400, 3))
    result = evaluate(candidate, feature_matrix(items), sample, current=current, config=GateConfig())  # type: ignore[arg-type]
    assert result.passed, result.reasons
    assert result.checks["rate_shift"] <= 0.15


def test_first_model_is_gated_without_comparison() -> None:
    items = make_items(200, 2)
    result = evaluate(
        train_model(items), feature_matrix(items), feature_matrix(items), current=None, config=GateConfig()
    )
    assert result.passed and "rate_shift" not in result.checks


def test_candidate_trained_on_half_anomalies_is_rejected(current: object) -> None:
    items = make_items(400, 4, planted=0.5)
    x = feature_matrix(items)
    result = evaluate(train_model(items), x, x, current=current, config=GateConfig())  # type: ignore[arg-type]
    assert not result.passed
    assert any("shift" in r for r in result.reasons)


def test_rate_band_uses_the_contamination() -> None:
    items = make_items(200, 5)
    model = train_model(items, ForestParams(contamination=0.1))
    x = feature_matrix(items)
    strict = GateConfig(contamination=0.3, rate_tolerance=0.1)
    result = evaluate(model, x, x, current=None, config=strict)
    assert not result.passed and "outside" in result.reasons[0]


def test_ks_distance() -> None:
    a = np.arange(100, dtype=np.float64)
    assert ks_distance(a, a) == 0.0
    assert ks_distance(a, a + 1000) == 1.0
    assert 0.0 < ks_distance(a, a + 10) < 0.2
