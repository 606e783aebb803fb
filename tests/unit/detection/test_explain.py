"""Severity and reasons: monotone mapping, the right feature named for each planted outlier."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detection import AnomalyModel, StockItem, feature_matrix, parse_item, train_model
from detection.explain import (
    MAX_REASONS,
    SEVERITY_LEVELS,
    Explainer,
    FeatureStats,
    ScoreStats,
    feature_stats,
    score_stats,
)
from detection.features import features_from_columns

RANK = {level: rank for rank, level in enumerate(SEVERITY_LEVELS)}


def normal_docs(n: int, seed: int) -> list[dict[str, object]]:
    """Normal items with varied levels: a feature that is constant in training cannot be split on."""
    rng = np.random.default_rng(seed)
    docs: list[dict[str, object]] = []
    for i in range(n):
        lo = int(rng.choice([20, 50, 100]))
        docs.append(
            {
                "sku": f"N{seed}-{i}",
                "stock_quantity": int(rng.integers(lo + 10, 4 * lo - 10)),
                "min_stock": lo,
                "max_stock": 4 * lo,
                "price": round(float(rng.uniform(8, 15)), 2),
            }
        )
    return docs


PLANTED = {
    "BIG": {"sku": "BIG", "stock_quantity": 50000, "min_stock": 50, "max_stock": 200, "price": 10},
    "NEG": {"sku": "NEG", "stock_quantity": -5, "min_stock": 50, "max_stock": 200, "price": 10},
    "PRICE": {"sku": "PRICE", "stock_quantity": 100, "min_stock": 50, "max_stock": 200, "price": 999},
}


@pytest.fixture(scope="module")
def items() -> list[StockItem]:
    return [parse_item(d) for d in [*normal_docs(60, seed=11), *PLANTED.values()]]


@pytest.fixture(scope="module")
def model(items: list[StockItem]) -> AnomalyModel:
    return train_model(items)


def stats_with_std(std: float) -> ScoreStats:
    return score_stats(np.array([-std, std]) + 0.05, threshold=0.0)


# ---------------------------------------------------------------- severity


def test_severity_cut_points_in_units_of_training_spread() -> None:
    x = Explainer(features=feature_stats(np.ones((3, 7))), scores=stats_with_std(0.1), threshold=0.0)
    assert [x.severity(s) for s in (0.2, 0.0, -0.05, -0.1, -0.15, -0.25, -0.35, -5.0)] == [
        "none", "none", "low", "low", "medium", "high", "critical", "critical",
    ]  # fmt: skip
    shifted = Explainer(features=feature_stats(np.ones((3, 7))), scores=stats_with_std(0.1), threshold=-0.2)
    assert shifted.severity(-0.1) == "none"
    assert shifted.severity(-0.3) == "low"


def test_severity_unit_is_floored() -> None:
    x = Explainer(features=feature_stats(np.ones((3, 7))), scores=stats_with_std(0.0), threshold=0.0)
    assert x.severity(-0.005) == "low"  # 0.5 units of the 0.01 floor, not infinitely many
    assert x.severity(-0.025) == "high"


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=0.0, max_value=0.5),
    st.floats(min_value=-0.3, max_value=0.3),
    st.lists(st.floats(min_value=-1.0, max_value=1.0), min_size=2, max_size=20),
)
def test_severity_is_monotone_in_score(std: float, threshold: float, scores: list[float]) -> None:
    x = Explainer(features=feature_stats(np.ones((3, 7))), scores=stats_with_std(std), threshold=threshold)
    ordered = sorted(scores)
    ranks = [RANK[x.severity(s)] for s in ordered]
    assert ranks == sorted(ranks, reverse=True)
    for s, r in zip(ordered, ranks, strict=True):
        assert (r == 0) == (s >= threshold)


def test_model_severities_follow_scores(model: AnomalyModel, items: list[StockItem]) -> None:
    d = model.decide(items)
    order = np.argsort(d.scores)
    ranks = [RANK[d.severity(int(i))] for i in order]
    assert ranks == sorted(ranks, reverse=True)
    assert all((d.severity(i) == "none") == (not d.is_anomaly[i]) for i in range(len(d)))
    assert d.severity(next(i for i, it in enumerate(items) if it.item_id == "BIG")) in ("high", "critical")


# ---------------------------------------------------------------- reasons


def reasons_for(model: AnomalyModel, doc: dict[str, object]) -> tuple[str, ...]:
    """Reasons of a flagged item, through the model's decisions."""
    d = model.decide([parse_item(doc)])
    assert d.is_anomaly[0], doc
    return d.reasons(0)


def explain(model: AnomalyModel, doc: dict[str, object]) -> tuple[str, ...]:
    """Reasons for any item, flagged or not (an isolation forest scores values beyond the training
    range like the training extremes, so e.g. a slightly negative price is not always flagged)."""
    return model.explainer.reasons(feature_matrix([parse_item(doc)])[0])


@pytest.mark.parametrize(
    ("key", "first_reason_starts"),
    [
        ("BIG", "stock 50,000 is "),
        ("NEG", "stock is negative (-5): a data-quality problem"),
        ("PRICE", "price 999.00 is "),
    ],
)
def test_reasons_name_the_planted_feature(model: AnomalyModel, key: str, first_reason_starts: str) -> None:
    reasons = reasons_for(model, PLANTED[key])
    assert reasons[0].startswith(first_reason_starts)
    assert 1 <= len(reasons) <= MAX_REASONS
    assert len(set(reasons)) == len(reasons)


def test_reasons_words(model: AnomalyModel) -> None:
    big = reasons_for(model, PLANTED["BIG"])
    assert any(word in big[0] for word in ("max level 200", "min level 50", "typical"))
    price = reasons_for(model, PLANTED["PRICE"])
    assert "the typical" in price[0] and "usual" in price[0]
    low_price = explain(model, {"sku": "cheap", "stock_quantity": 120, "min_stock": 50, "max_stock": 200,
                                    "price": 0.01})  # fmt: skip
    assert any(r.startswith("price 0.01 is below the usual") for r in low_price)


def test_data_quality_reasons(model: AnomalyModel) -> None:
    inverted = explain(model, {"sku": "inv", "stock_quantity": 100, "min_stock": 500, "max_stock": 200,
                                   "price": 10})  # fmt: skip
    assert inverted[0] == "min level 500 is above max level 200: a data-quality problem"
    negative = explain(model, {"sku": "np", "stock_quantity": 100, "min_stock": 50, "max_stock": 200,
                                   "price": -3})  # fmt: skip
    assert negative[0] == "price is negative (-3.00): a data-quality problem"
    assert not any(r.startswith(("price ", "stock value")) for r in negative[1:])


def test_level_reasons(model: AnomalyModel) -> None:
    reasons = explain(model, {"sku": "lvl", "stock_quantity": 120, "min_stock": 50, "max_stock": 20000,
                                  "price": 10})  # fmt: skip
    assert reasons == ("max level 20,000 is 100x the typical 200 (usual 80-400)",)


def test_reasons_only_for_anomalies_never_empty_and_deterministic(
    model: AnomalyModel, items: list[StockItem]
) -> None:
    d = model.decide(items)
    assert d.is_anomaly.any() and not d.is_anomaly.all()
    for i in range(len(d)):
        if d.is_anomaly[i]:
            assert 1 <= len(d.reasons(i)) <= MAX_REASONS
            assert d.reasons(i) == model.decide([items[i]]).reasons(0)
        else:
            assert d.reasons(i) == ()
    assert list(d.anomaly_indices) == list(np.flatnonzero(d.is_anomaly))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-1e12, max_value=1e12), min_size=4, max_size=4))
def test_reasons_never_empty_for_any_row(model: AnomalyModel, values: list[float]) -> None:
    stock, lo, hi, price = values
    doc = {"sku": "h", "stock_quantity": stock, "min_stock": lo, "max_stock": hi, "price": price}
    row = feature_matrix([parse_item(doc)])[0]
    reasons = model.explainer.reasons(row)
    assert 1 <= len(reasons) <= MAX_REASONS
    assert all(r.strip() for r in reasons)


def test_robust_statistics_ignore_the_outliers_they_explain() -> None:
    x = np.array([[10.0] * 7, [11.0] * 7, [12.0] * 7, [13.0] * 7, [1e6] * 7])
    fs = feature_stats(x)
    assert isinstance(fs["price"], FeatureStats)
    assert fs["price"].p50 == 12.0
    e = Explainer(features=fs, scores=stats_with_std(0.1), threshold=0.0)
    z = e.robust_z(np.array([1e6] * 7))
    assert np.all(z > 1e5)  # the plain z-score of 1e6 here would be 2.0


# ---------------------------------------------------------------- pinned wording


def pinned_explainer() -> Explainer:
    rng = np.random.default_rng(5)
    lo = rng.integers(20, 80, 200).astype(float)
    hi = lo + rng.integers(100, 300, 200)
    stock = rng.integers(20, 300, 200).astype(float)
    price = np.round(rng.uniform(2, 60, 200), 2)
    train = features_from_columns(stock, lo, hi, price)
    return Explainer(
        features=feature_stats(train), scores=score_stats(np.linspace(-0.1, 0.2, 50), 0.0), threshold=0.0
    )


# (stock, min, max, price) -> reasons, as written by the implementation before the per-model
# wording was precomputed (every branch of _phrase and of the data-quality rules is covered).
PINNED_REASONS: list[tuple[tuple[float, float, float, float], tuple[str, ...]]] = [
    (
        (50000, 50, 200, 10),
        (
            "stock 50,000 is 250x its max level 200 (usually 20%-90% of the way from min to max)",
            "stock value 500,000.00 is 135x the typical 3,698.40 (usual 1,543.25-7,317.03)",
        ),
    ),
    ((-5, 50, 200, 10), ("stock is negative (-5): a data-quality problem",)),
    (
        (100, 50, 200, 999),
        (
            "price 999.00 is 34x the typical 29.45 (usual 14.68-44.65)",
            "stock value 99,900.00 is 27x the typical 3,698.40 (usual 1,543.25-7,317.03)",
        ),
    ),
    ((100, 50, 200, -3), ("price is negative (-3.00): a data-quality problem",)),
    (
        (100, 300, 200, 10),
        (
            "min level 300 is above max level 200: a data-quality problem",
            "stock 100 is below its min level 300 (usually 20%-90% of the way from min to max)",
        ),
    ),
    ((10, 50, 200, 10), ("stock 10 is below its min level 50 (usually 20%-90% of the way from min to max)",)),
    (
        (400, 50, 200, 10),
        ("stock 400 is 2.0x its max level 200 (usually 20%-90% of the way from min to max)",),
    ),
    ((150, 50, 200, 10), ("price 10.00 is below the usual 14.68-44.65",)),
    (
        (100, 5000, 9000, 10),
        (
            "min level 5,000 is 103x the typical 48.5 (usual 34-65.25)",
            "max level 9,000 is 37x the typical 241.5 (usual 193.5-287)",
            "stock 100 is below its min level 5,000 (usually 20%-90% of the way from min to max)",
        ),
    ),
    (
        (0.5, 50, 200, 0.01),
        ("stock 0.5 is below its min level 50 (usually 20%-90% of the way from min to max)",),
    ),
    (
        (1e12, 1, 1e12, 1e12),
        (
            "stock value 1e+24 is 270,387,560,009,139,060,736x the typical 3,698.40 (usual 1,543.25-7,317.03)",
            "stock 1,000,000,000,000 is 1,000,000,000,000x its min level 1 (usually 1.808-4.863 times)",
            "price 1,000,000,000,000.00 is 33,955,857,385x the typical 29.45 (usual 14.68-44.65)",
        ),
    ),
    (
        (-1e12, 1e12, -1e12, -1e12),
        (
            "stock is negative (-1,000,000,000,000): a data-quality problem",
            "price is negative (-1,000,000,000,000.00): a data-quality problem",
            "min level 1,000,000,000,000 is above max level -1,000,000,000,000: a data-quality problem",
        ),
    ),
    (
        (123456.789, 50, 200, 12.345),
        (
            "stock 1.235e+05 is 617x its max level 200 (usually 20%-90% of the way from min to max)",
            "stock value 1,524,074.06 is 412x the typical 3,698.40 (usual 1,543.25-7,317.03)",
        ),
    ),
    ((75, 70, 80, 20), ("max level 80 is below the usual 193.5-287",)),
    ((3, 1, 2, 0), ("max level 2 is below the usual 193.5-287",)),
]


def test_reasons_wording_is_pinned() -> None:
    explainer = pinned_explainer()
    columns = [np.array(c, dtype=np.float64) for c in zip(*(case for case, _ in PINNED_REASONS), strict=True)]
    rows = features_from_columns(*columns)
    assert [explainer.reasons(row) for row in rows] == [expected for _, expected in PINNED_REASONS]
    assert [explainer.reasons(row.tolist()) for row in rows] == [expected for _, expected in PINNED_REASONS]
