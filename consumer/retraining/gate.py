"""The validation gate a retrained candidate must pass before it is promoted — pure, no I/O.

These are the ``seed`` detector's rules; a ``default`` detector's are in
:mod:`consumer.retraining.change_gate` (they share rule 7). Rules (every failing rule adds a reason; any reason rejects the candidate):

1. **snapshot** (:func:`check_snapshot`, before training): at least ``MIN_TRAINING_ITEMS`` rows and
   not degenerate — when every feature has zero variance (all items identical) there is nothing
   to isolate and the forest would be meaningless.
2. **features**: the model's feature names are ``detection.FEATURE_NAMES``.
3. **finite**: every score on the training snapshot and on the sample is finite.
4. **degenerate scores**: the training scores are not all equal (std > 0).
5. **anomaly-rate band**: the share of the training snapshot the candidate flags lies within
   ``contamination * (1 ± rate_tolerance)``.
6. **drift vs current** (only when a current model exists): on the same recent sample, the
   candidate's anomaly rate differs from the current model's by at most ``max_rate_shift``, and
   the two-sample Kolmogorov-Smirnov distance between their score distributions is at most
   ``max_ks``. A candidate trained on a snapshot full of anomalies learns them as normal: it
   flags far fewer of the sample than the current model does, and is rejected here.
7. **labelled precision** (:func:`check_labelled_precision`; only with a current model and at least
   ``min_labels`` analyst labels whose item state is known): on the labelled item states, the
   precision of a model is the share of the labelled items it flags that analysts ``confirmed``.
   The candidate is refused when its precision is lower than the current model's, or when it
   flags none of them while the current model flags at least one confirmed anomaly (it would miss
   every one). Both precisions (and recalls) are reported in ``checks.labelled``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from detection import FEATURE_NAMES
from detection.params import MIN_TRAINING_ITEMS

__all__ = [
    "GateConfig",
    "GateResult",
    "ScoringModel",
    "check_labelled_precision",
    "check_snapshot",
    "evaluate",
    "ks_distance",
]

FloatArray = npt.NDArray[np.float64]


class ScoringModel(Protocol):
    """What the gate needs from ``detection.AnomalyModel``."""

    @property
    def threshold(self) -> float: ...
    @property
    def metadata(self) -> Any: ...
    def score(self, features: npt.ArrayLike) -> FloatArray: ...


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Bounds of the gate (from settings ``retrain_contamination`` and ``gate_*``)."""

    contamination: float = 0.1
    rate_tolerance: float = 0.5
    max_rate_shift: float = 0.15
    max_ks: float = 0.5
    min_labels: int = 20
    max_alert_ratio: float = 3.0  # the default detector's (consumer.retraining.change_gate)
    max_recall_drop: float = 0.05


@dataclass(slots=True)
class GateResult:
    """``passed`` and, when not, the human-readable ``reasons``; ``checks`` holds the measurements."""

    reasons: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the registry and status events."""
        return {"passed": self.passed, "reasons": list(self.reasons), "checks": dict(self.checks)}


def check_snapshot(features: FloatArray) -> GateResult:
    """Rule 1: enough rows, and not all identical (zero variance in every feature)."""
    result = GateResult()
    n = int(features.shape[0])
    result.checks["n_samples"] = n
    if n < MIN_TRAINING_ITEMS:
        result.reasons.append(f"too few usable items: {n} < {MIN_TRAINING_ITEMS}")
        return result
    std = features.std(axis=0)
    result.checks["feature_std"] = dict(zip(FEATURE_NAMES, map(float, std), strict=True))
    if not np.all(np.isfinite(features)):
        result.reasons.append("snapshot has non-finite features")
    elif np.all(
        features.max(axis=0) == features.min(axis=0)
    ):  # exact; a float std of equal values may be 1e-17
        result.reasons.append(f"degenerate snapshot: all {n} items have identical features (zero variance)")
    return result


def ks_distance(a: FloatArray, b: FloatArray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def evaluate(
    candidate: ScoringModel,
    train_features: FloatArray,
    sample_features: FloatArray,
    *,
    current: ScoringModel | None,
    config: GateConfig,
) -> GateResult:
    """Rules 2-6 for a trained candidate (see the module docstring)."""
    result = GateResult()
    names = tuple(candidate.metadata.feature_names)
    result.checks["feature_names"] = list(names)
    if names != FEATURE_NAMES:
        result.reasons.append(f"unexpected features {names}, expected {FEATURE_NAMES}")
        return result
    train_scores = candidate.score(train_features)
    cand_sample = candidate.score(sample_features)
    if not (np.all(np.isfinite(train_scores)) and np.all(np.isfinite(cand_sample))):
        result.reasons.append("candidate produces non-finite scores")
        return result
    std = float(train_scores.std())
    result.checks["training_score_std"] = std
    if float(train_scores.max()) == float(train_scores.min()):
        result.reasons.append("degenerate model: every training item gets the same score")
    rate = float(np.mean(train_scores < candidate.threshold))
    low = config.contamination * (1 - config.rate_tolerance)
    high = config.contamination * (1 + config.rate_tolerance)
    result.checks["training_anomaly_rate"] = rate
    result.checks["rate_band"] = [low, high]
    if not low <= rate <= high:
        result.reasons.append(
            f"anomaly rate on its training snapshot {rate:.3f} outside [{low:.3f}, {high:.3f}]"
        )
    if current is not None and sample_features.shape[0] > 0:
        _compare(candidate, current, sample_features, cand_sample, result=result, config=config)
    return result


def _compare(
    candidate: ScoringModel,
    current: ScoringModel,
    sample_features: FloatArray,
    cand_scores: FloatArray,
    *,
    result: GateResult,
    config: GateConfig,
) -> None:
    """Rule 6: candidate and current model on the same sample."""
    cur_scores = current.score(sample_features)
    cand_rate = float(np.mean(cand_scores < candidate.threshold))
    cur_rate = float(np.mean(cur_scores < current.threshold))
    shift = abs(cand_rate - cur_rate)
    ks = ks_distance(cand_scores, cur_scores) if np.all(np.isfinite(cur_scores)) else 1.0
    result.checks |= {
        "sample_size": int(sample_features.shape[0]),
        "sample_anomaly_rate": {"candidate": cand_rate, "current": cur_rate},
        "rate_shift": shift,
        "ks_distance": ks,
    }
    if shift > config.max_rate_shift:
        result.reasons.append(
            f"on a recent sample the candidate flags {cand_rate:.1%} and the current model {cur_rate:.1%}: "
            f"shift {shift:.3f} > {config.max_rate_shift:g}"
        )
    if ks > config.max_ks:
        result.reasons.append(
            f"score distribution differs from the current model: KS {ks:.3f} > {config.max_ks:g}"
        )


def _precision_recall(flags: npt.NDArray[np.bool_], confirmed: npt.NDArray[np.bool_]) -> dict[str, Any]:
    flagged, hits = int(flags.sum()), int((flags & confirmed).sum())
    total = int(confirmed.sum())
    return {
        "flagged": flagged,
        "precision": hits / flagged if flagged else None,
        "recall": hits / total if total else None,
    }


def check_labelled_precision(
    candidate: ScoringModel,
    current: ScoringModel | None,
    features: FloatArray,
    confirmed: npt.NDArray[np.bool_],
    *,
    min_labels: int,
    result: GateResult,
) -> None:
    """Rule 7 (see the module docstring); adds ``checks.labelled`` and, when worse, a reason."""
    n = int(confirmed.size)
    labelled: dict[str, Any] = {"labels": n, "confirmed": int(confirmed.sum()), "min_labels": min_labels}
    result.checks["labelled"] = labelled
    if current is None or n < min_labels:
        labelled["skipped"] = "no current model" if current is None else f"fewer than {min_labels} labels"
        return
    cand = _precision_recall(candidate.score(features) < candidate.threshold, confirmed)
    cur = _precision_recall(current.score(features) < current.threshold, confirmed)
    labelled |= {"candidate": cand, "current": cur}
    p_cand, p_cur = cand["precision"], cur["precision"]
    if p_cand is None:
        if p_cur:
            result.reasons.append(
                f"on {n} labelled items the candidate flags none, the current model "
                f"{cur['flagged']} (precision {p_cur:.2f})"
            )
    elif p_cur is not None and p_cand < p_cur:
        result.reasons.append(
            f"labelled precision {p_cand:.2f} is below the current model's {p_cur:.2f} on {n} labelled items"
        )
