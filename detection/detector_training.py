"""Training the ``default`` detector from a snapshot (one state per item) and the seed switch.

The forest learns normal *changes* from synthetic normal motion of the snapshot's items
(:mod:`detection.normal_motion`), scored through the serving feature code. Its offset is the
quantile of the served (hull-gated) score at the alert budget, so ``score < 0`` flags
``alert_budget_per_1000`` of 1,000 normal updates over the whole range of the setting; the
quantiles of the training scores calibrate the 0-100 severity.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler

from detection.change_features import CHANGE_FEATURE_NAMES
from detection.compiled_forest import CompiledForest
from detection.detector import ChangeDetector, baseline_table, gate
from detection.detector_meta import DEFAULT_ALERT_BUDGET_PER_1000, DetectorMetadata
from detection.explain import FeatureStats, score_stats
from detection.hull import Hull
from detection.items import StockItem
from detection.metadata import LibraryVersions
from detection.model import AnomalyModel, train_model
from detection.normal_motion import normal_transitions
from detection.params import MIN_TRAINING_ITEMS, ForestParams, TrainingError
from detection.peers import PeerStats
from detection.rules import DEFAULT_RULES, RuleSet
from detection.severity import calibrate
from detection.updates import UpdateBatch

__all__ = ["DETECTORS", "DetectorName", "train_detector", "train_named"]

DetectorName = Literal["seed", "default"]
DETECTORS: tuple[DetectorName, ...] = ("seed", "default")
TRAINING_ROWS = 60_000  # synthetic normal updates: enough for the budget's quantile at 1/1000
MAX_TRAINING_ITEMS = 20_000
HULL_WEIGHTS = (0.25,) * 10 + (0.0,)  # every change feature but the gap: long pauses are not errors
REPLAN_RANGE = (0.5, 2.0)  # a re-plan (new forecast, season) may halve or double the min and max levels
LEVEL_FEATURES = (CHANGE_FEATURE_NAMES.index("min_step"), CHANGE_FEATURE_NAMES.index("max_step"))


def train_detector(
    snapshot: UpdateBatch,
    params: ForestParams = ForestParams(),  # noqa: B008 (frozen)
    *,
    alert_budget_per_1000: float = DEFAULT_ALERT_BUDGET_PER_1000,
    rules: Sequence[Mapping[str, Any]] = DEFAULT_RULES,
    group_field: str = "category",
) -> ChangeDetector:
    """Fit the ``default`` detector on a snapshot; ``params.contamination`` is not used (the budget is)."""
    rng = np.random.default_rng(params.random_state)
    peers = PeerStats.fit(snapshot.groups, snapshot.price)
    table = baseline_table(snapshot)
    n_items = len(table)
    if n_items < MIN_TRAINING_ITEMS:
        raise TrainingError(f"need at least {MIN_TRAINING_ITEMS} complete items to train, got {n_items}")
    rows = table.gather(np.arange(n_items))
    if n_items > MAX_TRAINING_ITEMS:
        rows = rows[rng.choice(n_items, MAX_TRAINING_ITEMS, replace=False)]
    steps = max(4, min(64, TRAINING_ROWS // rows.shape[0]))
    x, _ = normal_transitions(rows, peers, rng, steps)
    scaler = StandardScaler().fit(x)
    scaler.scale_ = np.maximum(scaler.scale_, 1e-3)  # a constant feature must not divide by ~0
    xs = (x - scaler.mean_) / scaler.scale_
    forest = IsolationForest(n_estimators=params.n_estimators, max_samples=params.max_samples,
                             contamination="auto", random_state=params.random_state)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        forest.fit(xs)
    budget = alert_budget_per_1000 / 1000.0
    replan = (float(np.log(REPLAN_RANGE[0])), float(np.log(REPLAN_RANGE[1])))
    hull = Hull.fit(x, HULL_WEIGHTS, at_least={LEVEL_FEATURES[0]: replan, LEVEL_FEATURES[1]: replan})
    pen = hull.penalty(x)
    raw = CompiledForest.from_sklearn(forest).score_samples(xs) - pen
    forest.offset_ = budget_offset(raw, pen, budget)
    forest.contamination = budget
    compiled = CompiledForest.from_sklearn(forest)
    scores = gate(compiled.decision_function(xs) - pen, pen)
    meta = DetectorMetadata(
        created_at=datetime.now(UTC), n_samples=n_items, params=params,
        effective_max_samples=int(forest.max_samples_), library_versions=LibraryVersions.current(),
        offset=float(forest.offset_), state_offset=budget_offset(raw, pen, DEFAULT_ALERT_BUDGET_PER_1000 / 1000.0),
        training_scores=score_stats(scores, 0.0),
        feature_stats=_feature_stats(x), alert_budget_per_1000=alert_budget_per_1000,
        group_field=group_field, peer_groups=peers.to_json(), rules=RuleSet(rules).table(),
        score_quantiles=calibrate(scores), hull_low=hull.low, hull_high=hull.high, hull_weight=hull.weight, n_training_rows=int(x.shape[0]), training_steps=steps,
    )  # fmt: skip
    return ChangeDetector(scaler=scaler, forest=forest, metadata=meta, compiled=compiled)


def budget_offset(raw: np.ndarray[Any, np.dtype[np.float64]], penalty: np.ndarray[Any, np.dtype[np.float64]],
                  budget: float) -> float:  # fmt: skip
    """The offset flagging a share ``budget`` of the training rows, taken in the order the served
    score gives them (:func:`detection.detector.gate`): every change beyond the hull first, then
    the changes inside it by their forest score. A budget below the share beyond the hull flags
    only changes beyond it; a larger one flags all of those and the rarest changes inside it."""
    ordered = np.sort(gate(raw, penalty))
    k = min(int(budget * raw.size), raw.size - 1)
    return float(ordered[k])


def train_named(name: DetectorName, snapshot: UpdateBatch, items: Sequence[StockItem],
                params: ForestParams = ForestParams(), **options: Any) -> AnomalyModel | ChangeDetector:  # noqa: B008  # fmt: skip
    """The switch: ``seed`` trains today's state model on ``items``, ``default`` the change detector."""
    if name == "seed":
        return train_model(items, params)
    if name == "default":
        return train_detector(snapshot, params, **options)
    raise ValueError(f"unknown detector {name!r}; choose one of {DETECTORS}")


def _feature_stats(x: np.ndarray[Any, np.dtype[np.float64]]) -> dict[str, FeatureStats]:
    pct = np.percentile(x, (5, 25, 50, 75, 95), axis=0)
    return {
        name: FeatureStats(
            min=float(x[:, j].min()),
            max=float(x[:, j].max()),
            mean=float(x[:, j].mean()),
            std=float(x[:, j].std()),
            p5=float(pct[0, j]),
            p25=float(pct[1, j]),
            p50=float(pct[2, j]),
            p75=float(pct[3, j]),
            p95=float(pct[4, j]),
        )
        for j, name in enumerate(CHANGE_FEATURE_NAMES)
    }
