"""The store serves the ``default`` detector from arrays + JSON to callers that run both (``load_any``);
``load`` stays seed-only and says who serves a ``default`` model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from detection import ChangeDetector, ModelStore, ModelVerificationError, parse_updates, train_detector
from detection.scorer_arrays import ScorerArrayError, check_arrays
from detection.store import MANIFEST_FILE, METADATA_FILE, SCORER_FILE
from scripts.inventory_sim import SimConfig, simulate


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    snapshot_docs, events, _ = simulate(SimConfig(seed=303, n_items=200, days=4, error_rate=0.03))
    return parse_updates(snapshot_docs)[0], parse_updates(events)[0]


@pytest.fixture(scope="module")
def detector(data) -> ChangeDetector:  # type: ignore[no-untyped-def]
    return train_detector(data[0])


def _rehash(vdir: Path, name: str, data: bytes) -> None:
    (vdir / name).write_bytes(data)
    manifest = json.loads((vdir / MANIFEST_FILE).read_text())
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (vdir / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_round_trip_decides_exactly_as_the_trained_detector(tmp_path, data, detector) -> None:
    store = ModelStore(tmp_path)
    version = store.publish(detector)
    loaded = store.load_any()
    assert isinstance(loaded, ChangeDetector) and loaded.version == version
    assert loaded.forest is None  # built from arrays: nothing was unpickled
    snapshot, updates = data
    a, _ = detector.decide_batch(detector.baseline(snapshot), updates)
    b, _ = loaded.decide_batch(loaded.baseline(snapshot), updates)
    assert a.is_anomaly.sum() > 0
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.is_anomaly, b.is_anomaly)
    np.testing.assert_array_equal(a.severity_score, b.severity_score)
    assert [i.detector for i in store.versions()] == ["default"]


def test_a_seed_only_caller_refuses_a_default_model_and_names_who_serves_it(tmp_path, detector) -> None:
    store = ModelStore(tmp_path)
    version = store.publish(detector)
    with pytest.raises(
        ModelVerificationError, match=f"model {version}: .*`stockwatch consume` and `stockwatch score` serve"
    ):
        store.load()
    assert isinstance(store.load_any(), ChangeDetector)  # the same version, for a caller that runs both


def test_load_any_serves_the_seed_model_too_and_follows_current(tmp_path, detector) -> None:
    from detection import AnomalyModel, parse_item, train_model

    rng = np.random.default_rng(1)
    seed = train_model(
        [parse_item({"item_id": f"i{k}", "stock_quantity": float(v), "min_stock_level": 1.0,
                     "max_stock_level": 200.0, "price": 5.0}) for k, v in enumerate(rng.uniform(1, 150, 100))]
    )  # fmt: skip
    store = ModelStore(tmp_path)
    first = store.publish(seed)
    second = store.publish(detector)
    assert isinstance(store.load_any(), ChangeDetector) and store.load_any().version == second
    store.rollback(first)
    loaded = store.load_any()
    assert isinstance(loaded, AnomalyModel) and loaded.version == first
    assert store.load().version == first


def test_metadata_and_arrays_must_agree_on_the_feature_count(tmp_path, detector) -> None:
    from detection import parse_item, train_model
    from detection.scorer_arrays import dump_arrays

    rng = np.random.default_rng(0)
    seed = train_model(
        [parse_item({"item_id": f"i{k}", "stock_quantity": float(v), "min_stock_level": 1.0,
                     "max_stock_level": 200.0, "price": 5.0}) for k, v in enumerate(rng.uniform(1, 150, 100))]
    )  # fmt: skip
    with pytest.raises(ScorerArrayError, match="7 features, the metadata names 11"):
        check_arrays(seed.to_arrays(), n_features=11)
    store = ModelStore(tmp_path)
    version = store.publish(detector)
    _rehash(tmp_path / version, SCORER_FILE, dump_arrays(seed.to_arrays()))  # seed arrays, default metadata
    with pytest.raises(ModelVerificationError, match="metadata names 11"):
        store.load_any()


@pytest.mark.parametrize(
    ("field", "value"),
    [("hull_high", "nan"), ("score_quantiles", "short"), ("peer_groups", "zero_spread"), ("rules", "bad")],
)
def test_tampered_detector_state_is_refused(tmp_path, detector, field, value) -> None:
    store = ModelStore(tmp_path)
    version = store.publish(detector)
    meta = json.loads((tmp_path / version / METADATA_FILE).read_text())
    if value == "nan":
        meta[field][0] = float("nan")  # json.dumps writes NaN: not finite, refused
    elif value == "short":
        meta[field] = meta[field][:10]
    elif value == "zero_spread":
        meta[field] = {"cat": [1.0, 0.0, 9.0]}
    else:
        meta[field] = [{"name": "x", "kind": "data_quality", "when": "stock <", "says": "broken"}]
    _rehash(tmp_path / version, METADATA_FILE, json.dumps(meta).encode())
    with pytest.raises(ModelVerificationError, match=f"model {version}"):
        store.load_any()
    assert store.versions()[0].error is not None  # `models list` and `rollback` check what loading checks
    with pytest.raises(ModelVerificationError, match=f"model {version}"):
        store.metadata(version)
