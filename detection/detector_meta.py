"""Metadata of a ``default`` detector: everything it adds to a model, as plain JSON.

It extends :class:`detection.model.ModelMetadata` (so the store lists both kinds alike) with the
rules table, the peer statistics and the severity calibration: no pickled objects, ready for an
npz + JSON serving format.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from detection.change_features import CHANGE_FEATURE_NAMES
from detection.metadata import ModelMetadata

__all__ = ["DEFAULT_ALERT_BUDGET_PER_1000", "DetectorMetadata"]

DEFAULT_ALERT_BUDGET_PER_1000: Final = 2.0
"""Model alerts per 1,000 *normal* updates (calibrated on normal motion). Real error rates of
0.5-2 % need the false alarms well below the true ones for precision >= 0.9, and rules add their
own alerts on top; 2 per 1,000 measured best across simulator shapes (see docs/detection.md)."""


class DetectorMetadata(ModelMetadata):
    """:class:`ModelMetadata` of a ``default`` detector plus its rules, peers and calibration."""

    detector: Literal["seed", "default"] = "default"
    feature_names: tuple[str, ...] = CHANGE_FEATURE_NAMES
    alert_budget_per_1000: float = Field(default=DEFAULT_ALERT_BUDGET_PER_1000, gt=0.0, le=500.0)
    group_field: str = "category"
    peer_groups: dict[str, list[float]] = Field(default_factory=dict)  # group: [median, spread, n]
    rules: list[dict[str, str]] = Field(default_factory=list)
    score_quantiles: list[float]
    hull_low: list[float]  # per feature: the 0.1 % quantile of normal motion
    hull_high: list[float]  # per feature: the 99.9 % quantile of normal motion
    hull_weight: list[float]  # score lost per hull width beyond it (0: feature not penalised)
    n_training_rows: int = Field(ge=1)
    training_steps: int = Field(ge=1)
