"""StockWatch detection core: items in, scores, decisions and reasons out (no network I/O).

The public API is the contract with ``consumer/`` (see ``docs/architecture.md``)::

    item = parse_item(message)                 # StockItem or ItemValidationError(.reason)
    model = train_model(items)                 # StandardScaler + IsolationForest (seed defaults)
    decisions = model.decide(batch)            # scores, is_anomaly, features; severity(i), reasons(i)
    version = ModelStore(root).publish(model)  # versioned, verified files
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detection.features import FEATURE_NAMES, feature_matrix
    from detection.items import ItemValidationError, StockItem, parse_item
    from detection.metadata import ModelMetadata
    from detection.model import AnomalyModel, Decisions, train_model, train_on_features
    from detection.params import ForestParams, TrainingError
    from detection.store import ModelNotFoundError, ModelStore, ModelVerificationError

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
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'detection' has no attribute {name!r}")
    return getattr(importlib.import_module(f"detection.{home}"), name)


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
