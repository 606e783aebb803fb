"""Metadata of a ``default`` detector: everything it adds to a model, as plain JSON.

It extends :class:`detection.model.ModelMetadata` (so the store lists both kinds alike) with the
rules table, the peer statistics, the hull and the severity calibration. It is the serving
format of that state (``metadata.json`` beside ``scorer.npz``): untrusted input, so every number
must be finite and every list must have the length the kernel reads.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field, model_validator

from detection.change_features import CHANGE_FEATURE_NAMES
from detection.metadata import ModelMetadata
from detection.rules import RuleSet

__all__ = ["DEFAULT_ALERT_BUDGET_PER_1000", "N_SEVERITY_QUANTILES", "DetectorMetadata"]

DEFAULT_ALERT_BUDGET_PER_1000: Final = 0.5
"""Model alerts per 1,000 *normal* updates (calibrated on synthetic normal motion): the expected
false alarms. Precision P at recall R on a stream with error rate e needs at most
e * R * (1 - P) / P false alarms per update: 0.5 per 1,000 for P = R = 0.9 at e = 0.5 %, a low
real-world error rate (chosen from that bound, not fitted to a data set)."""
N_SEVERITY_QUANTILES: Final = 51  # detection.severity.TAIL_LOG10
MAX_GROUPS: Final = 100_000
MAX_RULES: Final = 32  # the rule bitmask is a uint32

Finite = Annotated[float, Field(allow_inf_nan=False)]
Text = Annotated[str, Field(min_length=1, max_length=2000)]


class DetectorMetadata(ModelMetadata):
    """:class:`ModelMetadata` of a ``default`` detector plus its rules, peers and calibration."""

    detector: Literal["seed", "default"] = "default"
    feature_names: tuple[str, ...] = CHANGE_FEATURE_NAMES
    threshold: Finite = 0.0
    offset: Finite
    state_offset: Finite | None = None  # the offset at the default budget: the flags the item state follows
    alert_budget_per_1000: float = Field(default=DEFAULT_ALERT_BUDGET_PER_1000, gt=0.0, le=500.0)
    group_field: str = Field(default="category", max_length=200)  # "": no peer grouping
    # group: [median log price, spread (> 0), count]
    peer_groups: dict[Text, Annotated[list[Finite], Field(min_length=3, max_length=3)]] = Field(
        default_factory=dict, max_length=MAX_GROUPS
    )
    rules: list[dict[Text, Text | Finite]] = Field(default_factory=list, max_length=MAX_RULES)
    score_quantiles: list[Finite] = Field(min_length=N_SEVERITY_QUANTILES, max_length=N_SEVERITY_QUANTILES)
    hull_low: list[Finite]  # per feature: the 0.1 % quantile of normal motion
    hull_high: list[Finite]  # per feature: the 99.9 % quantile of normal motion
    hull_weight: list[Annotated[float, Field(ge=0.0, le=1e6, allow_inf_nan=False)]]  # score per hull width
    n_training_rows: int = Field(ge=1)
    training_steps: int = Field(ge=1)

    @model_validator(mode="after")
    def _shapes(self) -> DetectorMetadata:
        n = len(self.feature_names)
        if self.detector != "default" or tuple(self.feature_names) != CHANGE_FEATURE_NAMES:
            raise ValueError(f"a default detector scores the change features {CHANGE_FEATURE_NAMES}")
        if not (len(self.hull_low) == len(self.hull_high) == len(self.hull_weight) == n):
            raise ValueError(f"hull_low, hull_high and hull_weight must hold {n} values each")
        if any(v[1] <= 0.0 for v in self.peer_groups.values()):
            raise ValueError("peer_groups spreads must be positive")
        RuleSet(self.rules)  # a table the detector cannot compile is refused here: listing = loading
        return self
