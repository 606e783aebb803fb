"""A retrain's candidate for the detector the settings name: snapshot, training, gate, report data.

``seed`` reads the snapshot as the seed's 7 state features and gates with
:mod:`consumer.retraining.gate`; ``default`` reads it as item states (with the peer group and
``occurred_at``), fits the change detector with :func:`detection.train_detector` — the code
``stockwatch train --detector default --items S`` runs — and gates with
:mod:`consumer.retraining.change_gate`. Both apply the same training exclusions (flagged and
confirmed items out, false positives kept) and the labelled-precision rule; a current model of the
other kind is not compared with (its figures mean something else).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from consumer.retraining.change_gate import MotionSample, evaluate_change, kind_of
from consumer.retraining.change_snapshot import UpdateSnapshot, collect_updates
from consumer.retraining.gate import (
    GateConfig,
    GateResult,
    check_labelled_precision,
    check_snapshot,
    evaluate,
)
from consumer.retraining.labels import Labels
from consumer.retraining.report import Previous, ReportData
from consumer.retraining.snapshot import Snapshot, collect
from detection import (
    CHANGE_FEATURE_NAMES,
    DEFAULT_RULES,
    FEATURE_NAMES,
    AnomalyModel,
    ChangeDetector,
    ForestParams,
    TrainingError,
    train_detector,
    train_on_features,
)

__all__ = ["Candidate", "TrainingSpec", "default_candidate", "seed_candidate"]

Model = AnomalyModel | ChangeDetector


@dataclass(frozen=True, slots=True)
class TrainingSpec:
    """What to train: the detector, its forest parameters, the budget, the gate's bounds."""

    detector: str = "seed"
    params: ForestParams = field(default_factory=ForestParams)
    alert_budget_per_1000: float = 0.5
    rules: Sequence[Mapping[str, Any]] | None = None  # the settings' rule table (None: the built-in one)
    group_field: str = "category"  # settings `peer_group_field`, bound into default models ("": none)
    gate: GateConfig = field(default_factory=GateConfig)
    sample_size: int = 10_000
    batch_size: int = 5000
    progress_every: int = 100_000

    @property
    def fields(self) -> tuple[str, ...]:
        """Inventory fields read besides the item's numbers."""
        if self.detector != "default":
            return ()
        return (self.group_field, "occurred_at") if self.group_field else ("occurred_at",)


@dataclass(slots=True)
class Candidate:
    """A trained candidate (None when training failed or the snapshot is degenerate) and its gate."""

    model: Model | None
    snapshot: Snapshot | UpdateSnapshot
    gate: GateResult
    report: Callable[[str, bool, list[str]], ReportData] | None = None  # (name, promoted, reasons)


def _previous(current: Model | None, scores: Any | None) -> Previous | None:
    if current is None:
        return None
    meta = current.metadata
    figures: dict[str, Any] = {
        "trained on": f"{meta.n_samples:,} items",
        "threshold": f"{current.threshold:g}",
    }
    if isinstance(current, ChangeDetector):
        figures["alert budget"] = f"{current.metadata.alert_budget_per_1000:g} per 1,000 normal updates"
    else:
        figures["anomaly rate at training"] = f"{meta.training_scores.anomaly_rate:.1%}"
    return Previous(meta.version, kind_of(current), scores, float(current.threshold), figures)


def _labelled(candidate: Model, current: Model | None, labels: Labels, *, kind: str, spec: TrainingSpec,
              result: GateResult) -> None:  # fmt: skip
    same = current is not None and kind_of(current) == kind
    features, confirmed = labels.rows_for(kind)
    check_labelled_precision(candidate, current if same else None, features, confirmed,
                             min_labels=spec.gate.min_labels, result=result)  # fmt: skip
    if current is not None and not same:
        result.checks["labelled"]["skipped"] = f"the current model is a {kind_of(current)} model"


DOWNGRADE: Final = (
    "a seed model would replace the serving default model (about one alert per ten updates): the worker "
    "never does that; to go back on purpose, publish one with `stockwatch train --detector seed`"
)


def seed_candidate(docs: Iterable[Mapping[str, Any]], *, spec: TrainingSpec, exclude: set[str],
                   labels: Labels, current: Model | None, expected: int | None,
                   on_chunk: Callable[[int], None] | None) -> Candidate:  # fmt: skip
    """Today's state model: 7 features, contamination, the seed's gate (``current`` of the other kind: no comparison)."""
    snap = collect(docs, chunk_size=spec.batch_size, exclude_ids=exclude, expected=expected,
                   progress_every=spec.progress_every, on_chunk=on_chunk)  # fmt: skip
    pre = check_snapshot(snap.features) if snap.n_usable else GateResult()
    if snap.n_usable == 0 or not pre.passed:
        return Candidate(None, snap, pre)
    try:
        model = train_on_features(snap.features, spec.params)
    except TrainingError as exc:
        return Candidate(None, snap, GateResult(reasons=[f"training failed: {exc}"], checks=pre.checks))
    comparable = current if current is not None and kind_of(current) == "seed" else None
    sample = snap.sample(spec.sample_size)
    result = evaluate(model, snap.features, sample, current=comparable, config=spec.gate)
    if current is not None and comparable is None:
        result.checks["comparison"] = f"skipped: the current model is a {kind_of(current)} model"
        result.reasons.append(DOWNGRADE)  # one wrong STOCKWATCH_DETECTOR must not switch every consumer
    _labelled(model, current, labels, kind="seed", spec=spec, result=result)
    result.checks["detector"] = "seed"
    rows = snap.sample(spec.sample_size * 10)

    def report(name: str, promoted: bool, reasons: list[str]) -> ReportData:
        contamination = spec.params.contamination
        share = contamination if isinstance(contamination, float) else 0.0
        return ReportData(
            name=name, detector="seed", promoted=promoted, reasons=reasons, scores=model.score(rows),
            sample_words=f"{rows.shape[0]:,} snapshot items", threshold=model.threshold,
            alert_share=share, alert_words=f"contamination {share:.0%}", features=rows,
            feature_names=FEATURE_NAMES, previous=_previous(current, comparable.score(rows) if comparable else None),
            labelled=result.checks.get("labelled"),
            figures={"items trained on": f"{snap.n_usable:,}",
                     "anomaly rate on the snapshot": f"{result.checks.get('training_anomaly_rate', 0.0):.1%}"},
        )  # fmt: skip

    return Candidate(model, snap, result, report)


def default_candidate(docs: Iterable[Mapping[str, Any]], *, spec: TrainingSpec, exclude: set[str],
                      labels: Labels, current: Model | None, expected: int | None,
                      on_chunk: Callable[[int], None] | None) -> Candidate:  # fmt: skip
    """The change detector, trained as ``stockwatch train --detector default`` trains it, and its gate."""
    del expected  # the seed's progress log; parsing states is per chunk here
    snap = collect_updates(docs, chunk_size=spec.batch_size, group_field=spec.group_field, exclude_ids=exclude,
                           progress_every=spec.progress_every, on_chunk=on_chunk)  # fmt: skip
    if snap.n_usable == 0:
        return Candidate(None, snap, GateResult())
    if all(np.ptp(getattr(snap.batch, c)) == 0.0 for c in ("stock", "min", "max", "price")):
        reason = f"degenerate snapshot: all {snap.n_usable} items have identical numbers"
        return Candidate(None, snap, GateResult(reasons=[reason], checks={"n_samples": snap.n_usable}))
    try:
        rules = DEFAULT_RULES if spec.rules is None else spec.rules
        model = train_detector(snap.batch, spec.params, alert_budget_per_1000=spec.alert_budget_per_1000,
                               rules=rules, group_field=spec.group_field)  # fmt: skip
    except TrainingError as exc:
        return Candidate(None, snap, GateResult(reasons=[f"training failed: {exc}"]))
    sample = MotionSample.of(snap.batch)
    result = evaluate_change(model, sample, current=current, config=spec.gate)
    _labelled(model, current, labels, kind="default", spec=spec, result=result)
    x = sample.normal_features(model)
    same = current if isinstance(current, ChangeDetector) else None

    def report(name: str, promoted: bool, reasons: list[str]) -> ReportData:
        budget = spec.alert_budget_per_1000
        alerts = result.checks.get("alerts_per_1000", {})
        return ReportData(
            name=name, detector="default", promoted=promoted, reasons=reasons, scores=model.score(x),
            sample_words=f"{x.shape[0]:,} fresh normal updates of the snapshot's items",
            threshold=model.threshold, alert_share=budget / 1000.0,
            alert_words=f"alert budget {budget:g} per 1,000", features=x, feature_names=CHANGE_FEATURE_NAMES,
            previous=_previous(current, same.score(sample.normal_features(same)) if same else None),
            labelled=result.checks.get("labelled"), planted=result.checks.get("planted_recall"),
            figures={"items trained on": f"{snap.n_usable:,}",
                     "alerts per 1,000 normal updates": f"{alerts.get('fresh_normal_motion', 0.0):.2f} "
                     f"(budget {budget:g}, at most {alerts.get('max', 0.0):g})"},
        )  # fmt: skip

    return Candidate(model, snap, result, report)
