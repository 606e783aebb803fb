"""The validation gate of a ``default`` detector candidate — pure, no I/O.

A ``default`` detector scores *changes* of an item, and a snapshot holds one state per item and
no change, so the seed's checks (anomaly rate of the training snapshot against the contamination,
rate shift and KS distance on a sample of states) have nothing to measure. The checks that mean
something for it run on a :class:`MotionSample` of the snapshot's items, kept as states so that
each model computes its own change features (its own peer statistics), as it does when serving:

1. **features**: the model's features are ``CHANGE_FEATURE_NAMES``; every score finite; the scores
   of normal motion not all equal.
2. **alert budget**: on *fresh* normal motion of the snapshot (the training generator with
   another seed), the model alerts at most ``max_alert_ratio`` x its ``alert_budget_per_1000``
   per 1,000 updates (measured: 1.1-1.9x on clean snapshots of 300-5,000 items: the offset is the
   budget quantile of the training rows themselves).
3. **planted reporting errors** (only against a current ``default`` model): the same items' next
   update replaced by a classic reporting error of each kind in :data:`PLANTED_KINDS`; the share the
   candidate flags must not be lower than the current model's by more than ``max_recall_drop``.
4. **agreement** with a current ``default`` model on the fresh motion: both models' alerts per 1,000,
   the share of updates they decide alike and the KS distance of their scores — reported, not
   gated (two sound models of different snapshots measured KS 0.08-0.42: no bound separates them).
5. **labelled precision** (:func:`consumer.retraining.gate.check_labelled_precision`) on the change
   features the serving model recorded for labelled anomalies.

A current model of the *other* kind (a seed model when the settings switch to ``default``) has no
comparable figures: checks 3-5 are skipped (``checks.comparison`` says so) and the candidate
stands on checks 1-2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from consumer.retraining.gate import GateConfig, GateResult, ks_distance
from detection import CHANGE_FEATURE_NAMES, ChangeDetector, UpdateBatch
from detection.change_features import Merged, change_features
from detection.detector import baseline_table
from detection.item_state import StateRows
from detection.normal_motion import normal_transitions
from detection.peers import PeerStats

__all__ = ["PLANTED_KINDS", "MotionSample", "evaluate_change", "kind_of"]

FloatArray = npt.NDArray[np.float64]
SAMPLE_ROWS: Final = 60_000  # fresh normal updates: ~30 alerts at the default budget of 0.5
MAX_ITEMS: Final = 20_000
HELD_OUT_SEED: Final = 7919  # not the training seed: the motion is fresh


def _f(rows: StateRows, name: str) -> FloatArray:
    return np.asarray(rows[name], dtype=np.float64)


def _stock(s: StateRows, stock: FloatArray) -> tuple[FloatArray, ...]:
    return stock, _f(s, "min"), _f(s, "max"), _f(s, "price")


PlantedKind = Callable[[StateRows], tuple[FloatArray, ...]]
PLANTED_KINDS: Final[dict[str, PlantedKind]] = {
    "unit_mistake_x10": lambda s: _stock(s, np.maximum(_f(s, "stock"), 1.0) * 10.0),
    "stock_decimal_shift": lambda s: _stock(s, np.floor(_f(s, "stock") / 10.0)),
    "phantom_drop_to_zero": lambda s: _stock(s, np.zeros(s.shape[0])),
    "double_booked_receipt": lambda s: _stock(
        s, _f(s, "stock") + _f(s, "max") + 2.0 * np.maximum(_f(s, "max") - _f(s, "min"), 1.0)
    ),
    "price_x10": lambda s: (_f(s, "stock"), _f(s, "min"), _f(s, "max"), _f(s, "price") * 10.0),
    "price_div10": lambda s: (_f(s, "stock"), _f(s, "min"), _f(s, "max"), _f(s, "price") / 10.0),
    "levels_x10": lambda s: (_f(s, "stock"), _f(s, "min") * 10.0, _f(s, "max") * 10.0, _f(s, "price")),
}


@dataclass(frozen=True, slots=True, eq=False)
class MotionSample:
    """Fresh normal motion and planted errors of a snapshot's items, kept as states (see the module)."""

    start: StateRows
    steps: int
    seed: int
    end: StateRows  # the items after a few normal updates: where the errors are planted

    @classmethod
    def of(cls, snapshot: UpdateBatch, *, seed: int = HELD_OUT_SEED, rows: int = SAMPLE_ROWS) -> MotionSample:
        table = baseline_table(snapshot)
        n = len(table)
        rng = np.random.default_rng(seed)
        idx = np.arange(n) if n <= MAX_ITEMS else np.sort(rng.choice(n, MAX_ITEMS, replace=False))
        start = table.gather(idx)
        steps = max(1, min(64, rows // max(1, start.shape[0])))
        _, end = normal_transitions(start, PeerStats({}), np.random.default_rng(seed + 1), 4)
        return cls(start, steps, seed, end)

    def normal_features(self, model: ChangeDetector) -> FloatArray:
        """The change features ``model`` computes for the fresh normal updates (same motion for every model)."""
        return normal_transitions(self.start, model.peers, np.random.default_rng(self.seed), self.steps)[0]

    def planted_features(self, model: ChangeDetector) -> dict[str, FloatArray]:
        """Per planted kind, the change features ``model`` computes for that error on every item."""
        end = self.end
        median, spread = model.peers.lookup(end["group"])
        nan = np.full(end.shape[0], np.nan)
        out = {}
        for kind, make in PLANTED_KINDS.items():
            stock, lo, hi, price = make(end)
            merged = Merged(stock, lo, hi, price, nan, end["group"].copy())
            out[kind] = change_features(end, merged, median, spread)
        return out


def kind_of(model: Any) -> str:
    """``seed`` or ``default``: the detector a model's metadata names."""
    return str(getattr(model.metadata, "detector", "seed"))


def _alerts_per_1000(model: ChangeDetector, x: FloatArray) -> float:
    return float(np.mean(model.score(x) < model.threshold)) * 1000.0 if x.shape[0] else 0.0


def planted_recall(model: ChangeDetector, sample: MotionSample) -> dict[str, float]:
    """The share of each planted kind ``model`` flags, and ``all`` (their mean)."""
    recall = {
        k: float(np.mean(model.score(x) < model.threshold)) for k, x in sample.planted_features(model).items()
    }
    return recall | {"all": float(np.mean(list(recall.values())))}


def evaluate_change(
    candidate: ChangeDetector, sample: MotionSample, *, current: Any | None, config: GateConfig
) -> GateResult:
    """Checks 1-4 of the module docstring (5 runs in the retrainer, with the labels)."""
    result = GateResult()
    names = tuple(candidate.metadata.feature_names)
    result.checks |= {"detector": "default", "feature_names": list(names)}
    if names != CHANGE_FEATURE_NAMES:
        result.reasons.append(f"unexpected features {names}, expected {CHANGE_FEATURE_NAMES}")
        return result
    x = sample.normal_features(candidate)
    scores = candidate.score(x)
    if not np.all(np.isfinite(scores)):
        result.reasons.append("candidate produces non-finite scores")
        return result
    result.checks["training_score_std"] = float(scores.std())
    if scores.size and float(scores.max()) == float(scores.min()):
        result.reasons.append("degenerate model: every normal update gets the same score")
    budget = float(candidate.metadata.alert_budget_per_1000)
    rate = _alerts_per_1000(candidate, x)
    bound = budget * config.max_alert_ratio
    result.checks |= {
        "sample_size": int(x.shape[0]),
        "alerts_per_1000": {"fresh_normal_motion": rate, "budget": budget, "max": bound},
        # the seed's figure, for the status event and the report: the share of normal updates flagged
        "training_anomaly_rate": rate / 1000.0,
    }
    if rate > bound:
        result.reasons.append(
            f"on fresh normal motion of its snapshot the candidate alerts {rate:.2f} per 1,000 updates, "
            f"above {config.max_alert_ratio:g} x its budget of {budget:g}"
        )
    cand_recall = planted_recall(candidate, sample)
    result.checks["planted_recall"] = {"candidate": cand_recall}
    if current is None:
        return result
    if kind_of(current) != "default":
        result.checks["comparison"] = (
            f"skipped: the current model is a {kind_of(current)} model; its figures are not comparable"
        )
        return result
    cur_x = sample.normal_features(current)
    cur_scores = current.score(cur_x)
    cur_recall = planted_recall(current, sample)
    result.checks["planted_recall"]["current"] = cur_recall
    agree = float(np.mean((scores < candidate.threshold) == (cur_scores < current.threshold)))
    result.checks["agreement"] = {
        "alerts_per_1000": {"candidate": rate, "current": _alerts_per_1000(current, cur_x)},
        "same_decision": agree,
        "ks_distance": ks_distance(scores, cur_scores) if np.all(np.isfinite(cur_scores)) else 1.0,
    }
    drop = cur_recall["all"] - cand_recall["all"]
    if drop > config.max_recall_drop:
        result.reasons.append(
            f"the candidate catches {cand_recall['all']:.1%} of planted reporting errors, the current model "
            f"{cur_recall['all']:.1%}: a drop of {drop:.3f} > {config.max_recall_drop:g}"
        )
    return result
