"""What is known about a trained model, as JSON: importable without scikit-learn or numba.

``stockwatch models list`` and the store's listing read it; only loading a model for scoring
needs the heavy libraries.
"""

from __future__ import annotations

import platform
from datetime import datetime
from importlib.metadata import version
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from detection.explain import FeatureStats, ScoreStats
from detection.features import FEATURE_NAMES
from detection.params import ForestParams

__all__ = ["MAX_ABS_SCORE", "MAX_SAMPLES", "LibraryVersions", "ModelMetadata"]

MAX_SAMPLES = 10**12  # no training set comes near it; beyond it the metadata is forged or corrupt
MAX_ABS_SCORE = 1e6  # forest scores lie within [-1, 1]; a finite bound keeps every comparison sane


class LibraryVersions(BaseModel):
    """Versions the model was trained with (the store refuses another sklearn by default)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    sklearn: str
    numpy: str
    python: str
    numba: str | None = None

    @classmethod
    def current(cls) -> LibraryVersions:
        return cls(
            sklearn=version("scikit-learn"),
            numpy=version("numpy"),
            python=platform.python_version(),
            numba=version("numba"),
        )


class ModelMetadata(BaseModel):
    """Everything known about a trained model, JSON-serialisable (``model_dump_json``).

    ``extra="ignore"``: metadata written by a newer release still loads in an older one (a
    rolled-back binary must be able to list and load the versions it finds).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)
    detector: Literal["seed", "default"] = "seed"
    """Which detector scores with this model: ``seed`` (state features) or ``default`` (changes)."""
    version: str | None = None
    created_at: datetime
    n_samples: int = Field(ge=1, le=MAX_SAMPLES)
    params: ForestParams
    effective_max_samples: int = Field(ge=1, le=MAX_SAMPLES)
    feature_names: tuple[str, ...] = FEATURE_NAMES
    library_versions: LibraryVersions
    threshold: float = Field(default=0.0, ge=-MAX_ABS_SCORE, le=MAX_ABS_SCORE)
    offset: float = Field(ge=-MAX_ABS_SCORE, le=MAX_ABS_SCORE)
    training_scores: ScoreStats
    feature_stats: dict[str, FeatureStats]
