"""The default detector's gate: alert budget on fresh motion, planted errors vs the current model,
a detector-kind swap, and the retrain choosing the detector the settings name."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consumer.retraining.candidates import TrainingSpec, default_candidate
from consumer.retraining.change_gate import PLANTED_KINDS, MotionSample, evaluate_change
from consumer.retraining.gate import GateConfig
from consumer.retraining.labels import Labels
from consumer.retraining.retrainer import RetrainConfig, Retrainer
from detection import ChangeDetector, ForestParams, ModelStore, parse_updates, train_detector, train_model
from detection.items import parse_item


def docs(n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lo = int(rng.integers(10, 60))
        hi = lo + int(rng.integers(100, 300))
        out.append({"_id": f"s{seed}-{i}", "stock_quantity": int(rng.integers(lo, hi)), "min_stock_level": lo,
                    "max_stock_level": hi, "price": round(float(rng.uniform(1, 50)), 2), "category": f"c{i % 4}"})  # fmt: skip
    return out


@pytest.fixture(scope="module")
def snapshot() -> Any:
    return parse_updates(docs(400, 1))[0]


@pytest.fixture(scope="module")
def sample(snapshot: Any) -> MotionSample:
    return MotionSample.of(snapshot, rows=20_000)


@pytest.fixture(scope="module")
def current(snapshot: Any) -> ChangeDetector:
    return train_detector(snapshot)


def test_a_sound_candidate_passes_and_reports_its_figures(
    sample: MotionSample, current: ChangeDetector
) -> None:
    candidate = train_detector(parse_updates(docs(400, 2))[0])
    result = evaluate_change(candidate, sample, current=current, config=GateConfig())
    assert result.passed, result.reasons
    alerts = result.checks["alerts_per_1000"]
    assert alerts["budget"] == candidate.metadata.alert_budget_per_1000
    assert 0.0 <= alerts["fresh_normal_motion"] <= alerts["max"]
    assert set(result.checks["planted_recall"]["candidate"]) == {*PLANTED_KINDS, "all"}
    assert 0.0 <= result.checks["agreement"]["same_decision"] <= 1.0


def test_alerting_far_above_the_budget_on_fresh_motion_is_refused(
    snapshot: Any, sample: MotionSample
) -> None:
    model = train_detector(snapshot)
    # miscalibrated: its threshold is the one of a budget of 0.5 per 1,000, its metadata claims 0.01
    claims = model.metadata.model_copy(update={"alert_budget_per_1000": 0.01})
    wrong = ChangeDetector(scaler=model.scaler, forest=model.forest, metadata=claims)
    assert evaluate_change(model, sample, current=None, config=GateConfig()).passed
    result = evaluate_change(wrong, sample, current=None, config=GateConfig())
    assert not result.passed
    assert "per 1,000 updates" in result.reasons[0]


def test_a_candidate_that_catches_fewer_planted_errors_is_refused(
    snapshot: Any, sample: MotionSample, current: ChangeDetector
) -> None:
    blunt = train_detector(snapshot, alert_budget_per_1000=0.005)  # a threshold far in the tail
    result = evaluate_change(blunt, sample, current=current, config=GateConfig(max_recall_drop=0.01))
    recall = result.checks["planted_recall"]
    assert recall["candidate"]["all"] < recall["current"]["all"] - 0.01
    assert any("planted reporting errors" in r for r in result.reasons)


def test_a_swap_from_a_seed_model_is_not_compared(snapshot: Any, sample: MotionSample) -> None:
    seed = train_model([parse_item(d) for d in docs(400, 3)])
    result = evaluate_change(train_detector(snapshot), sample, current=seed, config=GateConfig())
    assert result.passed, result.reasons
    assert result.checks["comparison"].startswith("skipped: the current model is a seed model")
    assert "current" not in result.checks["planted_recall"] and "agreement" not in result.checks


def test_default_candidate_excludes_items_and_counts_incomplete_ones() -> None:
    source = [*docs(60, 4), {"_id": "partial", "stock_quantity": 5}, {"_id": "bad", "price": "x"}]
    candidate = default_candidate(
        iter(source), spec=TrainingSpec(detector="default"), exclude={"s4-0", "s4-1"}, labels=Labels(),
        current=None, expected=None, on_chunk=None,
    )  # fmt: skip
    snap = candidate.snapshot
    assert (snap.n_read, snap.n_usable, snap.n_invalid, snap.n_excluded) == (62, 58, 2, 2)
    assert isinstance(candidate.model, ChangeDetector) and candidate.gate.passed, candidate.gate.reasons
    assert "s4-0" not in candidate.snapshot.batch.item_ids  # type: ignore[union-attr]


class Inventory:
    """A snapshot source for a whole retrain (no labels, nothing flagged)."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self.documents = documents
        self.recorded: list[dict[str, Any]] = []
        self.fields: list[Sequence[str]] = []

    def count_inventory(self) -> int:
        return len(self.documents)

    def iter_inventory(self, *, batch_size: int, exclude: Mapping[str, Any] | None = None,
                       fields: Sequence[str] = ()) -> Iterator[dict[str, Any]]:  # fmt: skip
        self.fields.append(tuple(fields))
        return iter(self.documents)

    def flagged_item_ids(self, collection: str) -> set[str]:
        return set()

    def labelled(self) -> list[dict[str, Any]]:
        return []

    def inventory_items(self, item_ids: Any) -> list[dict[str, Any]]:
        return []

    def record_version(self, doc: Mapping[str, Any]) -> None:
        self.recorded.append(dict(doc))


def test_the_retrain_trains_the_detector_it_is_configured_for(tmp_path: Path) -> None:
    store, db = ModelStore(tmp_path), Inventory(docs(300, 5))
    events: list[dict[str, Any]] = []
    seed_version = store.publish(train_model([parse_item(d) for d in docs(300, 6)]))
    config = RetrainConfig(
        detector="default", alert_budget_per_1000=1.0, params=ForestParams(n_estimators=50)
    )
    out = Retrainer(db=db, store=store, announce=events.append, config=config).run({"kind": "test"})
    assert out.status == "promoted", out.reasons
    assert db.fields == [("category", "occurred_at")]  # the peer group and times are read
    served = store.load_any()
    assert isinstance(served, ChangeDetector) and served.metadata.alert_budget_per_1000 == 1.0
    assert out.gate["checks"]["comparison"].startswith("skipped")  # seed -> default swap
    assert out.gate["checks"]["current_version"] == seed_version
    assert db.recorded[-1]["detector"] == "default" and db.recorded[-1]["metadata"]["detector"] == "default"
    assert events[0]["detector"] == "default"
    assert (store.root / str(out.version) / "report.png").stat().st_size > 1000


def test_the_retrain_binds_the_configured_rule_table_into_a_default_model(tmp_path: Path) -> None:
    rules = [{"name": "stock_over_5000", "when": "stock > 5000", "says": "stock {stock} over 5,000",
              "kind": "data_quality", "severity": 90.0}]  # fmt: skip
    config = RetrainConfig(detector="default", rules=rules, params=ForestParams(n_estimators=50))
    store = ModelStore(tmp_path)
    out = Retrainer(db=Inventory(docs(300, 5)), store=store, announce=lambda _e: None, config=config).run({})
    assert out.status == "promoted", out.reasons
    served = store.load_any()
    assert isinstance(served, ChangeDetector) and tuple(served.rules.names) == ("stock_over_5000",)


@pytest.mark.parametrize(("group_field", "fields", "groups"), [
    ("warehouse_id", ("warehouse_id", "occurred_at"), {"w0", "w1", "w2"}),
    ("", ("occurred_at",), set()),  # peer_group_field none: no peer grouping, nothing more read
])  # fmt: skip
def test_the_retrain_groups_peers_by_the_configured_field(
    tmp_path: Path, group_field: str, fields: tuple[str, ...], groups: set[str]
) -> None:
    from config import Settings
    from consumer.retraining.wiring import retrain_config

    setting = group_field or "none"
    config = retrain_config(Settings(detector="default", peer_group_field=setting))
    assert config.group_field == group_field  # the worker's wiring takes the setting
    config = RetrainConfig(
        detector="default", group_field=config.group_field, params=ForestParams(n_estimators=50)
    )
    db = Inventory([d | {"warehouse_id": f"w{k % 3}"} for k, d in enumerate(docs(300, 5))])
    store = ModelStore(tmp_path)
    out = Retrainer(db=db, store=store, announce=lambda _e: None, config=config).run({})
    assert out.status == "promoted", out.reasons
    assert db.fields == [fields]
    served = store.load_any()
    assert isinstance(served, ChangeDetector) and served.metadata.group_field == group_field
    assert set(served.metadata.peer_groups) == groups  # the categories c0-c3 are not the peers


def test_labelled_precision_compares_the_recorded_change_features(
    snapshot: Any, sample: MotionSample, current: ChangeDetector
) -> None:
    errors = sample.planted_features(current)["price_x10"][:15]
    normal = sample.normal_features(current)[:15]
    labels = Labels(
        change_features=np.concatenate([errors, normal]),
        change_confirmed=np.array([True] * 15 + [False] * 15),
    )
    candidate = default_candidate(
        iter(docs(400, 1)), spec=TrainingSpec(detector="default", gate=GateConfig(min_labels=20)), exclude=set(),
        labels=labels, current=current, expected=None, on_chunk=None,
    )  # fmt: skip
    labelled = candidate.gate.checks["labelled"]
    assert labelled["labels"] == 30 and "skipped" not in labelled
    assert labelled["candidate"]["recall"] == labelled["current"]["recall"] == 1.0  # price x10: all caught
    assert candidate.gate.passed, candidate.gate.reasons
    report = candidate.report("v1", True, []) if candidate.report else None
    assert report is not None and report.previous is not None and report.previous.scores is not None


def test_identical_items_are_a_degenerate_snapshot_for_the_default_detector_too() -> None:
    same = [{"_id": f"x{i}", "stock_quantity": 5, "min_stock_level": 1, "max_stock_level": 9, "price": 2.0}
            for i in range(30)]  # fmt: skip
    candidate = default_candidate(iter(same), spec=TrainingSpec(detector="default"), exclude=set(),
                                  labels=Labels(), current=None, expected=None, on_chunk=None)  # fmt: skip
    assert candidate.model is None and "degenerate snapshot" in candidate.gate.reasons[0]


def test_the_worker_never_replaces_a_default_model_by_a_seed_model(
    tmp_path: Path, current: ChangeDetector
) -> None:
    """A worker left with STOCKWATCH_DETECTOR=seed keeps the default model serving (the reverse swap is allowed)."""
    store, db = ModelStore(tmp_path), Inventory(docs(300, 5))
    version = store.publish(current)
    events: list[dict[str, Any]] = []
    out = Retrainer(db=db, store=store, announce=events.append, config=RetrainConfig(detector="seed")).run(
        {"kind": "test", "force": True}
    )
    assert out.status == "rejected"
    assert any("would replace the serving default model" in reason for reason in out.reasons), out.reasons
    assert store.current_version() == version and isinstance(store.load_any(), ChangeDetector)
    assert db.recorded[-1]["status"] == "rejected"
