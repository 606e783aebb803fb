"""Training and scoring: seed behaviour, exact agreement with scikit-learn, threshold vs score."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler

from detection import (
    AnomalyModel,
    ForestParams,
    ModelMetadata,
    StockItem,
    TrainingError,
    feature_matrix,
    parse_item,
    train_model,
    train_on_features,
)
from detection.params import MIN_TRAINING_ITEMS

SEED_NORMALS = [
    {"sku": "seed-1", "stock_quantity": 100, "min_stock": 50, "max_stock": 200, "price": 10},
    {"sku": "seed-2", "stock_quantity": 150, "min_stock": 50, "max_stock": 200, "price": 15},
    {"sku": "seed-3", "stock_quantity": 75, "min_stock": 50, "max_stock": 200, "price": 12},
    {"sku": "seed-5", "stock_quantity": 120, "min_stock": 50, "max_stock": 200, "price": 8},
]
PLANTED = {
    "BIG": {"sku": "BIG", "stock_quantity": 50000, "min_stock": 50, "max_stock": 200, "price": 10},
    "NEG": {"sku": "NEG", "stock_quantity": -5, "min_stock": 50, "max_stock": 200, "price": 10},
    "PRICE": {"sku": "PRICE", "stock_quantity": 100, "min_stock": 50, "max_stock": 200, "price": 999},
}


def normal_docs(n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "sku": f"N{seed}-{i}",
            "stock_quantity": int(rng.integers(70, 181)),
            "min_stock": 50,
            "max_stock": 200,
            "price": round(float(rng.uniform(8, 15)), 2),
        }
        for i in range(n)
    ]


def training_items() -> list[StockItem]:
    docs = SEED_NORMALS + normal_docs(60, seed=7) + list(PLANTED.values())
    return [parse_item(d) for d in docs]


@pytest.fixture(scope="module")
def items() -> list[StockItem]:
    return training_items()


@pytest.fixture(scope="module")
def model(items: list[StockItem]) -> AnomalyModel:
    return train_model(items)


@pytest.fixture(scope="module")
def reference(model: AnomalyModel, items: list[StockItem]) -> tuple[StandardScaler, IsolationForest]:
    """A plain scikit-learn fit with the seed's parameters, as the original design does it."""
    x = feature_matrix(items)
    scaler = StandardScaler().fit(x)
    forest = IsolationForest(contamination=0.1, random_state=42, n_estimators=100, max_samples="auto")
    return scaler, forest.fit(scaler.transform(x))


def fresh_features(seed: int = 3) -> np.ndarray:
    """Unseen items, normal and odd, for agreement checks beyond the training set."""
    docs = normal_docs(200, seed=seed)
    rng = np.random.default_rng(seed)
    for d in docs[::7]:
        d["stock_quantity"] = float(rng.choice([-50, 0, 5_000, 1e6, 250.5]))
        d["price"] = float(rng.choice([0, 0.01, 40, 5e4]))
        d["min_stock"] = float(rng.choice([0, 50, 500]))
    return feature_matrix([parse_item(d) for d in docs])


# ---------------------------------------------------------------- training rules


def test_fewer_than_ten_items_is_a_training_error(items: list[StockItem]) -> None:
    assert MIN_TRAINING_ITEMS == 10
    with pytest.raises(TrainingError, match=r"at least 10 valid items.*got 9"):
        train_model(items[:9])
    with pytest.raises(TrainingError):
        train_model([])
    assert train_model(items[:10]).metadata.n_samples == 10


def test_identical_items_are_a_training_error() -> None:
    same = [parse_item({"sku": f"s{i}", "stock_quantity": 5}) for i in range(20)]
    with pytest.raises(TrainingError, match="identical"):
        train_model(same)


def test_forest_params_defaults_and_validation() -> None:
    p = ForestParams()
    assert (p.contamination, p.random_state, p.n_estimators, p.max_samples) == (0.1, 42, 100, "auto")
    for bad in ({"contamination": 0.6}, {"contamination": 0.0}, {"n_estimators": 0}, {"max_samples": True},
                {"max_samples": 1.5}, {"typo": 1}):  # fmt: skip
        with pytest.raises(ValidationError):
            ForestParams(**bad)
    with pytest.raises(ValidationError):
        p.n_estimators = 5  # type: ignore[misc]


def test_params_are_used(items: list[StockItem]) -> None:
    m = train_model(items, ForestParams(n_estimators=10, max_samples=32, random_state=1))
    assert len(m.forest.estimators_) == 10
    assert m.forest.max_samples_ == 32
    assert m.metadata.effective_max_samples == 32
    auto = train_model(items, ForestParams(contamination="auto"))
    assert auto.forest.offset_ == -0.5


# ---------------------------------------------------------------- behaviour on the seed data


def test_planted_outliers_rank_below_every_inlier_and_are_flagged(
    model: AnomalyModel, items: list[StockItem]
) -> None:
    d = model.decide(items)
    planted = np.array([it.item_id in PLANTED for it in items])
    assert d.is_anomaly[planted].all()
    assert d.scores[planted].max() < d.scores[~planted].min()
    # the contamination share of the training set is flagged, give or take ties
    assert 0.05 <= d.is_anomaly.mean() <= 0.15


def test_unseen_outliers_are_flagged(model: AnomalyModel) -> None:
    d = model.decide([parse_item(p | {"sku": "new-" + k}) for k, p in PLANTED.items()])
    assert d.is_anomaly.all()
    typical = {"sku": "t", "stock_quantity": 125, "min_stock": 50, "max_stock": 200, "price": 11.5}
    assert not model.decide([parse_item(typical)]).is_anomaly.any()
    # contamination=0.1 puts the threshold at the training set's 10th percentile: about that share
    # of fresh normal items lands below it too, and no more than a few times that
    assert model.decide([parse_item(d) for d in normal_docs(300, seed=99)]).is_anomaly.mean() < 0.25


# ---------------------------------------------------------------- exact agreement with sklearn


def test_offset_equals_plain_sklearn_fit(model: AnomalyModel, reference: Any) -> None:
    _, forest = reference
    assert model.forest.offset_ == forest.offset_
    assert model.metadata.offset == forest.offset_
    assert model.forest.contamination == 0.1


def test_scaling_is_standard_scaler_transform(model: AnomalyModel, reference: Any) -> None:
    scaler, _ = reference
    x = fresh_features()
    np.testing.assert_array_equal(model.scaler.mean_, scaler.mean_)
    np.testing.assert_array_equal(model.scale(x), scaler.transform(x))


@pytest.mark.parametrize("which", ["training", "fresh"])
def test_score_equals_sklearn_decision_function(
    model: AnomalyModel, reference: Any, items: list[StockItem], which: str
) -> None:
    x = feature_matrix(items) if which == "training" else fresh_features()
    scaler, forest = reference
    expected = forest.decision_function(scaler.transform(x))
    got = model.score(x)
    assert np.max(np.abs(got - expected)) <= 1e-12
    np.testing.assert_array_equal(got, model.forest.decision_function(model.scale(x)))
    np.testing.assert_array_equal(model.predict(x), forest.predict(scaler.transform(x)))
    single = model.score(x[0])
    assert single.shape == (1,)
    assert single[0] == got[0]


def test_model_from_parts_scores_the_same(model: AnomalyModel) -> None:
    x = fresh_features()
    rebuilt = AnomalyModel(scaler=model.scaler, forest=model.forest, metadata=model.metadata)
    np.testing.assert_array_equal(rebuilt.score(x), model.score(x))
    assert rebuilt.threshold == model.metadata.threshold == 0.0
    with pytest.raises(TypeError):
        AnomalyModel(scaler=None, forest=model.forest, metadata=model.metadata)


# ---------------------------------------------------------------- score is not decision


def test_threshold_changes_decisions_not_scores(model: AnomalyModel, items: list[StockItem]) -> None:
    base = model.decide(items)
    strict = model.with_threshold(float(np.median(base.scores)))
    d = strict.decide(items)
    np.testing.assert_array_equal(d.scores, base.scores)
    assert d.is_anomaly.sum() > base.is_anomaly.sum()
    np.testing.assert_array_equal(d.is_anomaly, base.scores < strict.threshold)
    np.testing.assert_array_equal(strict.predict(feature_matrix(items)), np.where(d.is_anomaly, -1, 1))
    assert strict.metadata.threshold == strict.threshold
    assert model.threshold == 0.0  # the original is untouched
    lenient = model.with_threshold(-1.0)
    assert not lenient.decide(items).is_anomaly.any()


def test_train_with_threshold(items: list[StockItem], model: AnomalyModel) -> None:
    m = train_model(items, threshold=-0.1)
    assert m.threshold == m.metadata.threshold == m.metadata.training_scores.threshold == -0.1
    np.testing.assert_array_equal(m.score(feature_matrix(items)), model.score(feature_matrix(items)))


# ---------------------------------------------------------------- metadata


def test_metadata_is_complete_and_json_round_trips(model: AnomalyModel, items: list[StockItem]) -> None:
    md = model.metadata
    assert md.version is None and model.version is None
    assert md.n_samples == len(items)
    assert md.params == ForestParams()
    assert md.created_at.tzinfo is not None
    import sklearn

    assert md.library_versions.sklearn == sklearn.__version__
    assert md.library_versions.numpy == np.__version__
    scores = model.score(feature_matrix(items))
    ts = md.training_scores
    assert (ts.count, ts.min, ts.max) == (len(items), scores.min(), scores.max())
    assert ts.anomaly_rate == pytest.approx(np.mean(scores < 0))
    assert ts.percentiles["p10"] == pytest.approx(np.percentile(scores, 10))
    assert set(md.feature_stats) == set(md.feature_names)
    assert md.feature_stats["price"].p50 == pytest.approx(np.median([it.price for it in items]))
    again = ModelMetadata.model_validate_json(md.model_dump_json())
    assert again == md
    published = model.with_version("20261125T180102Z-1a2b3c4d")
    assert published.version == published.metadata.version == "20261125T180102Z-1a2b3c4d"
    assert model.version is None


def test_train_on_features_refuses_a_matrix_of_the_wrong_shape() -> None:
    with pytest.raises(TrainingError, match=r"\(n, 7\) feature matrix"):
        train_on_features(np.ones((20, 6)))
