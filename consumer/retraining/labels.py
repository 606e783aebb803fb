"""Analyst labels as training rules and as the gate's labelled set.

Training (:func:`training_exclusions`): items with a ``confirmed`` label are left out of the
snapshot (like flagged items); items whose labels are all ``false_positive`` are *kept*, even when
the consumer flagged them (the analyst said they are normal). An item with both kinds of label is
left out: one confirmed anomaly is enough to distrust its state.

Gate (:func:`load_labels`): one row per labelled episode — the item state that was scored (from the
anomaly audit, stored with the label), else the item's current inventory document — and whether
the label is ``confirmed``. Labels whose state cannot be found are counted as ``missing_state``.
A ``default`` detector judges a change, not a state: its rows are the change features the serving
model recorded in the audited event (``change_features``, ``change_confirmed``); labels of events a
seed model scored have none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from detection import CHANGE_FEATURE_NAMES, FEATURE_NAMES, ItemValidationError, feature_matrix, parse_item

__all__ = ["LabelDB", "Labels", "load_labels", "training_exclusions"]

log = logging.getLogger(__name__)

CONFIRMED, FALSE_POSITIVE = "confirmed", "false_positive"


class LabelDB(Protocol):
    """``consumer.adapters.mongo.WorkerMongo``'s label reads."""

    def labelled(self) -> list[dict[str, Any]]: ...
    def inventory_items(self, item_ids: Iterable[str]) -> list[dict[str, Any]]: ...


@dataclass(slots=True)
class Labels:
    """Labelled item ids, and the gate's rows: features (n, 7) and ``confirmed`` (n,) booleans."""

    confirmed_ids: set[str] = field(default_factory=set)
    false_positive_ids: set[str] = field(default_factory=set)
    features: npt.NDArray[np.float64] = field(
        default_factory=lambda: np.empty((0, len(FEATURE_NAMES)), dtype=np.float64)
    )
    confirmed: npt.NDArray[np.bool_] = field(default_factory=lambda: np.empty(0, dtype=bool))
    missing_state: int = 0
    change_features: npt.NDArray[np.float64] = field(
        default_factory=lambda: np.empty((0, len(CHANGE_FEATURE_NAMES)), dtype=np.float64)
    )
    change_confirmed: npt.NDArray[np.bool_] = field(default_factory=lambda: np.empty(0, dtype=bool))

    def rows_for(self, detector: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """The gate's labelled rows for a ``seed`` (item states) or ``default`` (changes) model."""
        if detector == "default":
            return self.change_features, self.change_confirmed
        return self.features, self.confirmed

    def summary(self) -> dict[str, int]:
        """JSON-ready counts for the run's snapshot summary."""
        return {
            "labelled_rows": int(self.confirmed.size),
            "confirmed": int(self.confirmed.sum()),
            "false_positive": int(self.confirmed.size - self.confirmed.sum()),
            "missing_state": self.missing_state,
            "labelled_changes": int(self.change_confirmed.size),
            "excluded_confirmed_items": len(self.confirmed_ids),
            "kept_false_positive_items": len(self.false_positive_ids - self.confirmed_ids),
        }


def training_exclusions(flagged: set[str], labels: Labels) -> set[str]:
    """Item ids to leave out of training: flagged or confirmed, minus those only ever false positives."""
    kept = labels.false_positive_ids - labels.confirmed_ids
    return (flagged | labels.confirmed_ids) - kept


def load_labels(db: LabelDB) -> Labels:
    """Every stored label with the item state it judged (see the module docstring)."""
    docs = [d for d in db.labelled() if d.get("label") in (CONFIRMED, FALSE_POSITIVE)]
    out = Labels()
    for d in docs:
        if d.get("item_id"):
            ids = out.confirmed_ids if d["label"] == CONFIRMED else out.false_positive_ids
            ids.add(str(d["item_id"]))
    need = {str(d["item_id"]) for d in docs if not isinstance(d.get("item"), Mapping) and d.get("item_id")}
    current = {}
    for doc in db.inventory_items(sorted(need)) if need else []:
        key = doc.get("item_id", doc.get("sku", doc.get("_id")))
        current[str(key)] = doc
    items, confirmed = [], []
    for d in docs:
        state = d.get("item") if isinstance(d.get("item"), Mapping) else current.get(str(d.get("item_id")))
        try:
            items.append(parse_item(state, require_id=False))
        except ItemValidationError:
            out.missing_state += 1
            continue
        confirmed.append(d["label"] == CONFIRMED)
    if items:
        out.features = feature_matrix(items)
        out.confirmed = np.asarray(confirmed, dtype=bool)
    changes = [(_change_row(d.get("features")), d["label"] == CONFIRMED) for d in docs]
    kept = [(row, ok) for row, ok in changes if row is not None]
    if kept:
        out.change_features = np.asarray([row for row, _ in kept], dtype=np.float64)
        out.change_confirmed = np.asarray([ok for _, ok in kept], dtype=bool)
    if out.missing_state:
        log.info("%d labels have no usable item state (no audit, item gone)", out.missing_state)
    return out


def _change_row(features: Any) -> list[float] | None:
    """The change features of an audited ``default`` event, in model order (None: not one, or unusable)."""
    if not isinstance(features, Mapping) or set(features) != set(CHANGE_FEATURE_NAMES):
        return None
    row = [features[name] for name in CHANGE_FEATURE_NAMES]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in row):
        return None
    return [float(v) for v in row]
