"""StockWatch detection core: items in, scores, decisions and reasons out (no network I/O).

The public API is the contract with ``consumer/`` (see ``docs/architecture.md``)::

    item = parse_item(message)                 # StockItem or ItemValidationError(.reason)
    model = train_model(items)                 # StandardScaler + IsolationForest (seed defaults)
    decisions = model.decide(batch)            # scores, is_anomaly, features; severity(i), reasons(i)
    version = ModelStore(root).publish(model)  # versioned, verified files
"""

from __future__ import annotations

from detection.features import FEATURE_NAMES, feature_matrix
from detection.items import ItemValidationError, StockItem, parse_item
from detection.model import AnomalyModel, Decisions, ModelMetadata, train_model, train_on_features
from detection.params import ForestParams, TrainingError
from detection.store import ModelNotFoundError, ModelStore, ModelVerificationError

__all__ = [
    "FEATURE_NAMES",
    "AnomalyModel",
    "Decisions",
    "ForestParams",
    "ItemValidationError",
    "ModelMetadata",
    "ModelNotFoundError",
    "ModelStore",
    "ModelVerificationError",
    "StockItem",
    "TrainingError",
    "feature_matrix",
    "parse_item",
    "train_model",
    "train_on_features",
]
