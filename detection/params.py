"""Isolation-forest parameters: the seed's defaults, validated and frozen.

The original design fixes ``contamination=0.1, random_state=42, n_estimators=100,
max_samples="auto"`` and refuses to train on fewer than 10 items; those are the defaults here and
every one of them is configurable. Strict types keep ``True`` from passing as ``1`` and ``1.0``
(a fraction: all samples) apart from ``1`` (one sample).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

__all__ = ["MIN_TRAINING_ITEMS", "ForestParams", "TrainingError", "shown_params"]

MIN_TRAINING_ITEMS: Final = 10
"""The seed's rule: fewer usable items than this and no model is trained."""


class TrainingError(ValueError):
    """No model could be trained (too few usable items, unusable parameters, ...)."""


_INT64_MAX = 2**63 - 1  # beyond it the summary and metadata cannot be written as JSON (orjson)


class ForestParams(BaseModel):
    """Parameters of the ``IsolationForest`` (see scikit-learn's documentation of each)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contamination: Annotated[StrictFloat, Field(gt=0.0, le=0.5)] | Literal["auto"] = 0.1
    """Expected share of anomalies in the training set; sets ``offset_`` (the training-set
    percentile that becomes score 0). ``"auto"`` uses the paper's fixed offset of -0.5."""
    random_state: Annotated[StrictInt, Field(ge=0, lt=2**32)] = 42
    """Seed of the tree construction: same data and seed, same model."""
    n_estimators: Annotated[StrictInt, Field(ge=1, le=10_000)] = 100
    """Number of isolation trees."""
    max_samples: (
        Literal["auto"]
        | Annotated[StrictInt, Field(ge=2, le=_INT64_MAX)]
        | Annotated[StrictFloat, Field(gt=0.0, le=1.0)]
    ) = "auto"
    """Samples drawn per tree: ``"auto"`` = min(256, n), an int count, or a float fraction of n."""


def shown_params(params: ForestParams, detector: str) -> dict[str, Any]:
    """``params`` as JSON for ``train`` and ``models show``: a ``default`` model has no contamination
    (its alert budget sets the threshold, shown beside), so the field is left out for it."""
    return params.model_dump(mode="json", exclude={"contamination"} if detector == "default" else None)
