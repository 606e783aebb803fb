"""Offline evaluation: train on a snapshot, replay change events in order, score against labels.

:func:`evaluate` is pure (documents in, metrics out); ``scripts/eval_detectors.py`` and the CLI
read the files. Both detectors replay the same events in batches:

* ``seed``: each update is merged onto the item's last *seen* state (the seed has no notion of
  history; merging only makes partial updates scorable) and its state is scored; ranking by
  ``-score``, alerts by ``score < threshold``.
* ``default``: :meth:`ChangeDetector.decide_batch` with state; ranking by the calibrated
  severity, alerts by ``is_anomaly``. Rows rejected as ``missing_field`` are counted, not scored.

Metrics (scikit-learn): average precision and ROC-AUC of the ranking, precision and recall of the
alerts, alerts per 1,000 updates, and ROC-AUC of each error kind against all normal updates.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

from detection.detector import ChangeDetector
from detection.detector_training import DETECTORS, DetectorName, train_named
from detection.features import features_from_columns
from detection.items import parse_item
from detection.model import AnomalyModel
from detection.params import ForestParams
from detection.updates import REQUIRED_FIELDS, parse_updates

__all__ = ["EvalResult", "evaluate", "format_table"]

FloatArray = npt.NDArray[np.float64]
_SEED_DEFAULTS = {"stock_quantity": 0.0, "min_stock_level": 1.0, "max_stock_level": 100.0, "price": 0.0}


@dataclass(frozen=True)
class EvalResult:
    """Quality of one detector on one replay."""

    detector: str
    n_events: int
    n_errors: int
    average_precision: float
    roc_auc: float
    precision: float
    recall: float
    alerts_per_1000: float
    auc_per_kind: dict[str, float] = field(default_factory=dict)
    n_rejected: int = 0
    seconds: float = 0.0


def evaluate(
    items: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    labels: Mapping[str, str],
    *,
    detectors: Sequence[DetectorName] = DETECTORS,
    batch_size: int = 2000,
    params: ForestParams = ForestParams(),  # noqa: B008 (frozen)
    group_field: str = "category",
    **options: Any,
) -> dict[str, EvalResult]:
    """Train each detector on ``items`` (S), replay ``events`` (E), judge with ``labels`` (L);
    ``default`` groups peers by ``group_field`` (``""``: none)."""
    snapshot, _ = parse_updates(items, group_field=group_field)
    stock_items = [parse_item(d) for d in items]
    updates, rejects = parse_updates(events, group_field=group_field)
    if rejects:
        raise ValueError(f"{len(rejects)} events are invalid, first: {rejects[0]}")
    kinds = [labels.get(e or "", "") for e in updates.event_ids]
    n_errors = sum(1 for k in kinds if k)
    if not 0 < n_errors < len(kinds):
        raise ValueError(
            f"the labels name {n_errors} of the {len(kinds)} events: need both errors and normal events"
        )
    out: dict[str, EvalResult] = {}
    for name in detectors:
        t0 = time.perf_counter()
        model = train_named(name, snapshot, stock_items, params, group_field=group_field, **options)
        if isinstance(model, ChangeDetector):
            replay = _replay_default(model, snapshot, updates, batch_size)
        else:
            replay = _replay_seed(model, items, events)
        out[name] = _metrics(name, kinds, replay, time.perf_counter() - t0)
    return out


def _replay_default(model: ChangeDetector, snapshot: Any, updates: Any, batch_size: int) -> tuple[FloatArray, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:  # fmt: skip
    table = model.baseline(snapshot)
    n = len(updates)
    rank, alert, scored = np.zeros(n), np.zeros(n, bool), np.ones(n, bool)
    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        batch = type(updates)(updates.item_ids[sl], updates.stock[sl], updates.min[sl], updates.max[sl],
                              updates.price[sl], updates.occurred_at[sl], updates.groups[sl],
                              updates.event_ids[sl])  # fmt: skip
        decisions, changes = model.decide_batch(table, batch)
        changes.apply_to(table)
        rank[sl], alert[sl] = decisions.severity_score, decisions.is_anomaly
        for i in decisions.rejected:
            scored[start + i] = False
    return rank, alert, scored


def _replay_seed(model: AnomalyModel, items: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]]) -> tuple[FloatArray, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:  # fmt: skip
    last: dict[str, list[float]] = {}
    for doc in items:
        it = parse_item(doc)
        last[str(it.item_id)] = [it.stock_quantity, it.min_stock_level, it.max_stock_level, it.price]
    cols = np.empty((len(events), 4))
    for k, ev in enumerate(events):
        state = last.setdefault(str(ev["item_id"]), [_SEED_DEFAULTS[f] for f in REQUIRED_FIELDS])
        for j, f in enumerate(REQUIRED_FIELDS):
            if f in ev:
                state[j] = float(ev[f])
        cols[k] = state
    decisions = model.decide_features(features_from_columns(cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3]))
    return -decisions.scores, decisions.is_anomaly, np.ones(len(events), bool)


def _metrics(name: str, kinds: list[str], replay: tuple[FloatArray, npt.NDArray[np.bool_], npt.NDArray[np.bool_]],
             seconds: float) -> EvalResult:  # fmt: skip
    rank, alert, scored = replay
    k = np.array(kinds, dtype=object)[scored]
    y = k != ""
    r, a = rank[scored], alert[scored]
    per_kind = {}
    for kind in sorted(set(k[y].tolist())):
        mask = (k == kind) | ~y
        per_kind[kind] = float(roc_auc_score(k[mask] == kind, r[mask]))
    return EvalResult(
        detector=name, n_events=int(y.size), n_errors=int(y.sum()),
        average_precision=float(average_precision_score(y, r)), roc_auc=float(roc_auc_score(y, r)),
        precision=float(precision_score(y, a, zero_division=0.0)), recall=float(recall_score(y, a)),
        alerts_per_1000=float(1000.0 * a.mean()), auc_per_kind=per_kind,
        n_rejected=int((~scored).sum()), seconds=seconds,
    )  # fmt: skip


def format_table(results: Mapping[str, EvalResult]) -> str:
    """The results side by side: one column per detector, one row per metric and per error kind."""
    names = list(results)
    rows = [("events", "n_events", "{:,}"), ("errors", "n_errors", "{:,}"), ("AP", "average_precision", "{:.3f}"),
            ("ROC-AUC", "roc_auc", "{:.3f}"), ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
            ("alerts/1000", "alerts_per_1000", "{:.2f}"), ("rejected", "n_rejected", "{:,}"),
            ("seconds", "seconds", "{:.1f}")]  # fmt: skip
    table = [["metric", *names]]
    table += [[label, *(fmt.format(getattr(results[n], attr)) for n in names)] for label, attr, fmt in rows]
    kinds = sorted({k for r in results.values() for k in r.auc_per_kind})
    table += [["AUC " + kind, *(f"{results[n].auc_per_kind.get(kind, float('nan')):.3f}" for n in names)]
              for kind in kinds]  # fmt: skip
    # widths from the longest cell: a long kind name or detector name never shifts a column
    label_w = max(len(row[0]) for row in table) + 2
    widths = [max(10, max(len(row[j]) for row in table) + 2) for j in range(1, len(names) + 1)]
    lines = [f"{row[0]:<{label_w}}" + "".join(f"{c:>{w}}" for c, w in zip(row[1:], widths, strict=True))
             for row in table]  # fmt: skip
    return "\n".join(lines)
