"""Training and scoring: StandardScaler + IsolationForest, scored by the compiled forest.

Score is not decision. :meth:`AnomalyModel.score` is exactly scikit-learn's
``decision_function`` on the scaled features (the scaling is done in numpy with the scaler's
``mean_``/``scale_``, the same float64 operations as ``StandardScaler.transform``, and the forest
is walked by :class:`detection.compiled_forest.CompiledForest`, bit-identical to sklearn). The
model's ``threshold`` (a field, default 0.0 = sklearn's ``predict`` rule) turns scores into
decisions: anomaly <=> ``score < threshold``.

Training fits the forest with ``contamination="auto"`` and then sets ``offset_`` with
:func:`detection.compiled_forest.fast_offset`: the trees do not depend on contamination, and the
offset equals what sklearn's own contamination fit computes, without sklearn's slow re-scoring of
the training set.
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numba
import numpy as np
import numpy.typing as npt
import sklearn
from pydantic import BaseModel, ConfigDict, Field
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler

from detection.compiled_forest import CompiledForest, fast_offset
from detection.explain import Explainer, FeatureStats, ScoreStats, Severity, feature_stats, score_stats
from detection.features import FEATURE_NAMES, N_FEATURES, feature_matrix
from detection.items import StockItem
from detection.params import MIN_TRAINING_ITEMS, ForestParams, TrainingError

__all__ = [
    "AnomalyModel",
    "Decisions",
    "LibraryVersions",
    "ModelMetadata",
    "train_model",
    "train_on_features",
]

FloatArray = npt.NDArray[np.float64]


class LibraryVersions(BaseModel):
    """Versions the model was trained with (the store refuses another sklearn by default)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    sklearn: str
    numpy: str
    python: str
    numba: str | None = None

    @classmethod
    def current(cls) -> LibraryVersions:
        return cls(sklearn=sklearn.__version__, numpy=np.__version__, python=platform.python_version(),
                   numba=numba.__version__)  # fmt: skip


class ModelMetadata(BaseModel):
    """Everything known about a trained model, JSON-serialisable (``model_dump_json``).

    ``extra="ignore"``: metadata written by a newer release still loads in an older one (a
    rolled-back binary must be able to list and load the versions it finds).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")
    detector: Literal["seed", "default"] = "seed"
    """Which detector scores with this model: ``seed`` (state features) or ``default`` (changes)."""
    version: str | None = None
    created_at: datetime
    n_samples: int = Field(ge=1)
    params: ForestParams
    effective_max_samples: int
    feature_names: tuple[str, ...] = FEATURE_NAMES
    library_versions: LibraryVersions
    threshold: float = 0.0
    offset: float
    training_scores: ScoreStats
    feature_stats: dict[str, FeatureStats]


@dataclass(frozen=True, slots=True, eq=False)
class Decisions:
    """Decisions for a batch, row ``i`` = input ``i``: ``scores``, ``is_anomaly``, raw ``features``.

    Severity and reasons are computed on demand per row, so the hot path (mostly normal items)
    pays only for the vectorised score and comparison. ``reasons(i)`` is empty for a normal row
    and never empty for an anomalous one.
    """

    scores: FloatArray
    is_anomaly: npt.NDArray[np.bool_]
    features: FloatArray
    threshold: float
    explainer: Explainer

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def anomaly_indices(self) -> npt.NDArray[np.intp]:
        """Row indices of the anomalies, ascending."""
        return np.flatnonzero(self.is_anomaly)

    def severity(self, i: int) -> Severity:
        """``"none"`` for a normal row, else low/medium/high/critical (see :mod:`detection.explain`)."""
        return self.explainer.severity(float(self.scores[i]))

    def reasons(self, i: int) -> tuple[str, ...]:
        """Up to three planner-readable reasons for an anomalous row; ``()`` for a normal one."""
        if not self.is_anomaly[i]:
            return ()
        return self.explainer.reasons(self.features[i])


class AnomalyModel:
    """A fitted scaler and forest, their compiled scorer, a decision threshold and metadata.

    Built from parts only (no I/O); immutable: :meth:`with_threshold` and :meth:`with_version`
    return new models sharing the fitted parts. ``threshold=None`` takes ``metadata.threshold``.
    """

    __slots__ = (
        "_compiled",
        "_explainer",
        "_forest",
        "_mean",
        "_metadata",
        "_scale",
        "_scaler",
        "_threshold",
    )

    def __init__(
        self, *, scaler: Any, forest: Any, metadata: ModelMetadata, threshold: float | None = None
    ) -> None:
        if not (isinstance(scaler, StandardScaler) and scaler.with_mean and scaler.with_std):
            raise TypeError(f"scaler must be a fitted StandardScaler with mean and std, got {scaler!r}")
        if not isinstance(forest, IsolationForest):
            raise TypeError(f"forest must be a fitted IsolationForest, got {forest!r}")
        self._init(scaler, forest, metadata, threshold, CompiledForest.from_sklearn(forest))

    def _init(
        self,
        scaler: Any,
        forest: Any,
        metadata: ModelMetadata,
        threshold: float | None,
        compiled: CompiledForest,
    ) -> None:
        if tuple(metadata.feature_names) != FEATURE_NAMES or compiled.n_features != N_FEATURES:
            raise ValueError(f"model features {metadata.feature_names} do not match {FEATURE_NAMES}")
        t = metadata.threshold if threshold is None else float(threshold)
        if not np.isfinite(t):
            raise ValueError(f"threshold must be finite, got {t}")
        self._scaler, self._forest, self._compiled = scaler, forest, compiled
        self._metadata = metadata if t == metadata.threshold else metadata.model_copy(update={"threshold": t})
        self._threshold = t
        self._mean = np.asarray(scaler.mean_, dtype=np.float64)
        self._scale = np.asarray(scaler.scale_, dtype=np.float64)
        self._explainer = Explainer(
            features=metadata.feature_stats, scores=metadata.training_scores, threshold=t
        )

    def _replace(self, metadata: ModelMetadata, threshold: float) -> AnomalyModel:
        new = object.__new__(AnomalyModel)
        new._init(self._scaler, self._forest, metadata, threshold, self._compiled)
        return new

    # -- read-only parts ------------------------------------------------------------------
    @property
    def scaler(self) -> Any:
        """The fitted ``StandardScaler``."""
        return self._scaler

    @property
    def forest(self) -> Any:
        """The fitted ``IsolationForest`` (``offset_`` and ``contamination`` as a plain fit sets them)."""
        return self._forest

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def version(self) -> str | None:
        return self._metadata.version

    @property
    def explainer(self) -> Explainer:
        return self._explainer

    def __repr__(self) -> str:
        return f"AnomalyModel(version={self.version!r}, n_samples={self._metadata.n_samples}, threshold={self._threshold})"

    def with_threshold(self, threshold: float) -> AnomalyModel:
        """The same model deciding with another threshold (scores unchanged)."""
        return self._replace(self._metadata, float(threshold))

    def with_version(self, version: str | None) -> AnomalyModel:
        return self._replace(self._metadata.model_copy(update={"version": version}), self._threshold)

    # -- scoring ----------------------------------------------------------------------------
    def scale(self, features: npt.ArrayLike) -> FloatArray:
        """``StandardScaler.transform`` in numpy: ``(X - mean_) / scale_`` in float64."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f"expected features of shape (n, {N_FEATURES}), got {np.shape(features)}")
        return np.asarray((x - self._mean) / self._scale, dtype=np.float64)

    def score(self, features: npt.ArrayLike) -> FloatArray:
        """sklearn's ``decision_function`` on the scaled features: the lower, the more anomalous."""
        return self._compiled.decision_function(self.scale(features))

    def predict(self, features: npt.ArrayLike) -> npt.NDArray[np.int_]:
        """-1 for an anomaly (``score < threshold``), +1 otherwise (sklearn's convention)."""
        return np.where(self.score(features) < self._threshold, -1, 1)

    def decide_features(self, features: npt.ArrayLike) -> Decisions:
        """Like :meth:`decide` for a raw (n, 7) feature matrix (e.g. from ``features_from_columns``)."""
        x = np.asarray(features, dtype=np.float64).reshape(-1, N_FEATURES)
        scores = self.score(x)
        return Decisions(scores, scores < self._threshold, x, self._threshold, self._explainer)

    def decide(self, items: Sequence[StockItem]) -> Decisions:
        """Score and decide a batch of items in one vectorised call."""
        return self.decide_features(feature_matrix(items))


def train_model(
    items: Sequence[StockItem],
    params: ForestParams = ForestParams(),  # noqa: B008 (frozen, so a shared default is safe)
    *,
    threshold: float = 0.0,
) -> AnomalyModel:
    """Fit scaler and forest on ``items`` and return the model (no I/O; version None until published).

    Raises :class:`TrainingError` for fewer than ``MIN_TRAINING_ITEMS`` items, for items that are
    all identical (nothing to isolate), or when scikit-learn rejects the parameters.
    """
    if len(items) < MIN_TRAINING_ITEMS:
        raise TrainingError(
            f"need at least {MIN_TRAINING_ITEMS} valid items to train a model, got {len(items)}"
        )
    return train_on_features(feature_matrix(items), params, threshold=threshold)


def train_on_features(
    x: FloatArray,
    params: ForestParams = ForestParams(),  # noqa: B008 (frozen, so a shared default is safe)
    *,
    threshold: float = 0.0,
) -> AnomalyModel:
    """:func:`train_model` on an ``(n, 7)`` feature matrix already built (streamed snapshots).

    Same rules and result as ``train_model(items)`` when ``x == feature_matrix(items)``.
    """
    n = int(x.shape[0])
    if x.ndim != 2 or x.shape[1] != N_FEATURES:
        raise TrainingError(f"expected an (n, {N_FEATURES}) feature matrix, got shape {x.shape}")
    if n < MIN_TRAINING_ITEMS:
        raise TrainingError(f"need at least {MIN_TRAINING_ITEMS} valid items to train a model, got {n}")
    if np.all(x == x[0]):
        raise TrainingError(f"all {n} training items have identical features: there is nothing to learn")
    scaler = StandardScaler().fit(x)
    x_scaled = (x - scaler.mean_) / scaler.scale_
    forest = IsolationForest(
        n_estimators=params.n_estimators,
        max_samples=params.max_samples,
        contamination="auto",
        random_state=params.random_state,
    )
    try:
        with warnings.catch_warnings():  # "max_samples > n_samples": recorded as effective_max_samples
            warnings.simplefilter("ignore", UserWarning)
            forest.fit(x_scaled)
    except ValueError as exc:
        raise TrainingError(f"scikit-learn refused to fit the forest with {params!r}: {exc}") from exc
    if params.contamination != "auto":
        forest.offset_ = fast_offset(forest, x_scaled, params.contamination)
        forest.contamination = params.contamination
    compiled = CompiledForest.from_sklearn(forest)
    scores = compiled.decision_function(x_scaled)
    metadata = ModelMetadata(
        created_at=datetime.now(UTC),
        n_samples=n,
        params=params,
        effective_max_samples=int(forest.max_samples_),
        library_versions=LibraryVersions.current(),
        threshold=threshold,
        offset=float(forest.offset_),
        training_scores=score_stats(scores, threshold),
        feature_stats=feature_stats(x),
    )
    model = object.__new__(AnomalyModel)
    model._init(scaler, forest, metadata, threshold, compiled)
    return model
