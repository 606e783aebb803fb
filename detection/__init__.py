"""StockWatch detection core: items in, scores, decisions and reasons out (no network I/O).

The public API is the contract with ``consumer/`` (see ``docs/architecture.md``)::

    item = parse_item(message)                 # StockItem or ItemValidationError(.reason)
    model = train_model(items)                 # StandardScaler + IsolationForest (seed defaults)
    decisions = model.decide(batch)            # scores, is_anomaly, features; severity(i), reasons(i)
    version = ModelStore(root).publish(model)  # versioned, verified files

The ``default`` detector judges each update as a change of its item (``detection/detector.py``)::

    batch, rejects = parse_updates(messages)        # UpdateBatch columns; (index, reason) rejects
    detector = train_detector(snapshot_batch)       # or ModelStore(root).load_detector()
    table = detector.baseline(snapshot_batch)       # StateTable: 80-byte record per item
    decisions, changes = detector.decide_batch(table, batch)
    changes.apply_to(table)                         # after publishing; changes.packed() -> changelog
"""

from __future__ import annotations

from detection.change_decisions import ChangeDecisions
from detection.change_features import CHANGE_FEATURE_NAMES
from detection.detector import ChangeDetector, StateChanges
from detection.detector_meta import DEFAULT_ALERT_BUDGET_PER_1000, DetectorMetadata
from detection.detector_training import DETECTORS, DetectorName, train_detector, train_named
from detection.features import FEATURE_NAMES, feature_matrix
from detection.item_state import STATE_SIZE, ItemState, StateTable
from detection.items import ItemValidationError, StockItem, parse_item
from detection.model import AnomalyModel, Decisions, ModelMetadata, train_model, train_on_features
from detection.params import ForestParams, TrainingError
from detection.rules import DEFAULT_RULES, RuleError, RuleSet
from detection.store import ModelNotFoundError, ModelStore, ModelVerificationError
from detection.updates import MissingFieldError, UpdateBatch, parse_updates

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
