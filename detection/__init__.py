"""StockWatch detection core: items in, scores, decisions and reasons out (no network I/O).

The public API is the contract with ``consumer/`` (see ``docs/architecture.md``)::

    item = parse_item(message)                 # StockItem or ItemValidationError(.reason)
    model = train_model(items)                 # StandardScaler + IsolationForest (seed defaults)
    decisions = model.decide(batch)            # scores, is_anomaly, features; severity(i), reasons(i)
    version = ModelStore(root).publish(model)  # versioned, verified files

The ``default`` detector judges each update as a change of its item (``detection/detector.py``)::

    batch, rejects = parse_updates(messages)        # UpdateBatch columns; (index, reason) rejects
    detector = train_detector(snapshot_batch)
    table = detector.baseline(snapshot_batch)       # StateTable: 80-byte record per item
    decisions, changes = detector.decide_batch(table, batch)
    changes.apply_to(table)                         # after publishing; changes.packed() -> changelog
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detection.change_decisions import ChangeDecisions
    from detection.change_features import CHANGE_FEATURE_NAMES
    from detection.detector import ChangeDetector, StateChanges
    from detection.detector_meta import DEFAULT_ALERT_BUDGET_PER_1000, DetectorMetadata
    from detection.detector_training import DETECTORS, DetectorName, train_detector, train_named
    from detection.features import FEATURE_NAMES, feature_matrix
    from detection.item_state import STATE_SIZE, ItemState, StateTable
    from detection.items import ItemValidationError, StockItem, parse_item
    from detection.metadata import ModelMetadata
    from detection.model import AnomalyModel, Decisions, train_model, train_on_features
    from detection.params import ForestParams, TrainingError
    from detection.rules import DEFAULT_RULES, RuleError, RuleSet
    from detection.store import ModelNotFoundError, ModelStore, ModelVerificationError
    from detection.updates import MissingFieldError, UpdateBatch, parse_updates

# Names are imported on first use (PEP 562): listing models must not pay for sklearn and numba.
_HOMES = {
    "FEATURE_NAMES": "features",
    "feature_matrix": "features",
    "ItemValidationError": "items",
    "StockItem": "items",
    "parse_item": "items",
    "ModelMetadata": "metadata",
    "AnomalyModel": "model",
    "Decisions": "model",
    "train_model": "model",
    "train_on_features": "model",
    "ForestParams": "params",
    "TrainingError": "params",
    "ModelNotFoundError": "store",
    "ModelStore": "store",
    "ModelVerificationError": "store",
    "ChangeDecisions": "change_decisions",
    "CHANGE_FEATURE_NAMES": "change_features",
    "ChangeDetector": "detector",
    "StateChanges": "detector",
    "DEFAULT_ALERT_BUDGET_PER_1000": "detector_meta",
    "DetectorMetadata": "detector_meta",
    "DETECTORS": "detector_training",
    "DetectorName": "detector_training",
    "train_detector": "detector_training",
    "train_named": "detector_training",
    "STATE_SIZE": "item_state",
    "ItemState": "item_state",
    "StateTable": "item_state",
    "DEFAULT_RULES": "rules",
    "RuleError": "rules",
    "RuleSet": "rules",
    "MissingFieldError": "updates",
    "UpdateBatch": "updates",
    "parse_updates": "updates",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'detection' has no attribute {name!r}")
    return getattr(importlib.import_module(f"detection.{home}"), name)


__all__ = [
    "CHANGE_FEATURE_NAMES",
    "DEFAULT_ALERT_BUDGET_PER_1000",
    "DEFAULT_RULES",
    "DETECTORS",
    "FEATURE_NAMES",
    "STATE_SIZE",
    "AnomalyModel",
    "ChangeDecisions",
    "ChangeDetector",
    "Decisions",
    "DetectorMetadata",
    "DetectorName",
    "ForestParams",
    "ItemState",
    "ItemValidationError",
    "MissingFieldError",
    "ModelMetadata",
    "ModelNotFoundError",
    "ModelStore",
    "ModelVerificationError",
    "RuleError",
    "RuleSet",
    "StateChanges",
    "StateTable",
    "StockItem",
    "TrainingError",
    "UpdateBatch",
    "feature_matrix",
    "parse_item",
    "parse_updates",
    "train_detector",
    "train_model",
    "train_named",
    "train_on_features",
]
