"""Severity and reasons: what an inventory planner reads next to a score.

Training statistics
    :func:`score_stats` summarises the training set's scores and :func:`feature_stats` each raw
    feature (quartiles, 5th/95th percentiles, mean, std); both are stored in the model metadata so
    a loaded model explains itself exactly as it did when it was trained.

Severity (:meth:`Explainer.severity`)
    ``"none"`` when ``score >= threshold`` (not an anomaly). Otherwise the depth below the
    threshold is measured in units of the training scores' standard deviation (floored at
    :data:`MIN_SEVERITY_UNIT` so a near-constant training set does not make everything critical)::

        depth = (threshold - score) / max(std(training scores), 0.01)
        depth <= 1 -> "low",  <= 2 -> "medium",  <= 3 -> "high",  > 3 -> "critical"

    Relative rather than absolute cut points because isolation-forest scores have no fixed scale
    (they depend on the contamination offset and on the data); for one model the mapping is
    monotone: a lower score never gets a lower severity.

Reasons (:meth:`Explainer.reasons`)
    1. Data-quality rules first, they need no statistics: negative stock, negative price, a min
       level above the max level.
    2. Then each feature's robust z-score against the training items,
       ``z = (x - median) / spread`` with ``spread = IQR / 1.349`` (the standard deviation for
       normal data), falling back to the std, then to a tiny epsilon for a feature that was
       constant in training (any change of it is then far out). Robust statistics, not the
       scaler's mean/std, because the training set contains the very outliers we explain: the
       seed's 50,000-unit item alone inflates the std of stock so much that its plain z-score is
       only about 2.
    3. The seven features form five concerns: the stock level (stock, stock/min ratio, position
       in the min-max range: correlated, so they give one reason, phrased from the one with the
       largest |z|), stock value, price, min level, max level. Concerns are ranked by |z|
       (ties: feature order); a concern is reported when |z| >= :data:`REASON_MIN_Z`, and the
       first one always is, so an anomaly never has zero reasons. At most :data:`MAX_REASONS`.
    "Usual" in the messages is the middle half (25th-75th percentile) of the training items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from detection.features import FEATURE_NAMES

__all__ = [
    "MAX_REASONS",
    "MIN_SEVERITY_UNIT",
    "REASON_MIN_Z",
    "SEVERITY_LEVELS",
    "Explainer",
    "FeatureStats",
    "ScoreStats",
    "Severity",
    "feature_stats",
    "score_stats",
]

Severity = Literal["none", "low", "medium", "high", "critical"]
SEVERITY_LEVELS: Final[tuple[Severity, ...]] = ("none", "low", "medium", "high", "critical")
SEVERITY_CUTS: Final = (1.0, 2.0, 3.0)
MIN_SEVERITY_UNIT: Final = 0.01
REASON_MIN_Z: Final = 3.0
MAX_REASONS: Final = 3

_PERCENTILES: Final = (1, 5, 10, 25, 50, 75, 90, 95, 99)
_CONCERNS: Final = ("stock", "stock", "stock", "value", "price", "min", "max")  # per feature


class ScoreStats(BaseModel):
    """Training-set score distribution; ``anomaly_rate`` is the share below ``threshold``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    count: int
    min: float
    max: float
    mean: float
    std: float
    percentiles: dict[str, float]  # "p1", "p5", ..., "p99"
    threshold: float
    anomaly_rate: float


class FeatureStats(BaseModel):
    """Distribution of one raw feature over the training items."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    min: float
    max: float
    mean: float
    std: float
    p5: float
    p25: float
    p50: float
    p75: float
    p95: float


def score_stats(scores: npt.NDArray[np.float64], threshold: float) -> ScoreStats:
    """Summarise training scores (decision_function values)."""
    pct = np.percentile(scores, _PERCENTILES)
    return ScoreStats(
        count=int(scores.size),
        min=float(scores.min()),
        max=float(scores.max()),
        mean=float(scores.mean()),
        std=float(scores.std()),
        percentiles={f"p{p}": float(v) for p, v in zip(_PERCENTILES, pct, strict=True)},
        threshold=float(threshold),
        anomaly_rate=float(np.mean(scores < threshold)),
    )


def feature_stats(features: npt.NDArray[np.float64]) -> dict[str, FeatureStats]:
    """Per-feature statistics of the raw (n, 7) training feature matrix, keyed by feature name."""
    x = features
    pct = np.percentile(x, (5, 25, 50, 75, 95), axis=0)
    lo, hi, mean, std = x.min(axis=0), x.max(axis=0), x.mean(axis=0), x.std(axis=0)
    return {
        name: FeatureStats(
            min=float(lo[j]),
            max=float(hi[j]),
            mean=float(mean[j]),
            std=float(std[j]),
            p5=float(pct[0, j]),
            p25=float(pct[1, j]),
            p50=float(pct[2, j]),
            p75=float(pct[3, j]),
            p95=float(pct[4, j]),
        )
        for j, name in enumerate(FEATURE_NAMES)
    }


class Explainer:
    """Severity and reasons for one model (built from its metadata; immutable, thread-safe)."""

    __slots__ = (
        "_center",
        "_center_list",
        "_spread",
        "_spread_list",
        "_stats",
        "_texts",
        "_threshold",
        "_unit",
    )

    def __init__(self, *, features: Mapping[str, FeatureStats], scores: ScoreStats, threshold: float) -> None:
        self._stats = tuple(features[name] for name in FEATURE_NAMES)
        self._center = np.array([s.p50 for s in self._stats])
        spread = []
        for s in self._stats:
            width = (s.p75 - s.p25) / 1.349
            spread.append(width if width > 0 else s.std if s.std > 0 else max(abs(s.p50), 1.0) * 1e-9)
        self._spread = np.array(spread)
        self._threshold = float(threshold)
        self._unit = max(scores.std, MIN_SEVERITY_UNIT)
        # Per-model constants of reasons(), computed once: the same float64 values as Python floats
        # and the wording that depends only on the training statistics.
        self._center_list: tuple[float, ...] = tuple(self._center.tolist())
        self._spread_list: tuple[float, ...] = tuple(self._spread.tolist())
        self._texts: list[_Texts | None] = [None] * len(self._stats)  # filled on first use (benign race)

    def severity(self, score: float) -> Severity:
        """Map a score to a severity (see the module docstring); monotone in ``score``."""
        if not score < self._threshold:
            return "none"
        depth = (self._threshold - score) / self._unit
        for level, cut in zip(SEVERITY_LEVELS[1:], SEVERITY_CUTS, strict=False):
            if depth <= cut:
                return level
        return "critical"

    def robust_z(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``(x - median) / spread`` per feature, for one row or an (n, 7) matrix."""
        return np.asarray((features - self._center) / self._spread, dtype=np.float64)

    def reasons(self, row: Sequence[float] | npt.NDArray[np.float64]) -> tuple[str, ...]:
        """Up to :data:`MAX_REASONS` planner-readable reasons for one raw feature row, never empty."""
        x: list[float] = np.asarray(row, dtype=np.float64).tolist()
        stock, _ratio, _pos, _value, price, lo, hi = x
        out: list[str] = []
        covered: set[str] = set()
        if stock < 0:
            out.append(f"stock is negative ({_n(stock)}): a data-quality problem")
            covered.add("stock")
        if price < 0:
            out.append(f"price is negative ({_money(price)}): a data-quality problem")
            covered |= {"price", "value"}
        if lo > hi:
            out.append(f"min level {_n(lo)} is above max level {_n(hi)}: a data-quality problem")
            covered |= {"min", "max"}
        # robust_z in plain floats: the same IEEE operations as the numpy version, per element
        z = [(v - c) / d for v, c, d in zip(x, self._center_list, self._spread_list, strict=True)]
        best: dict[str, int] = {}
        for j in sorted(range(len(FEATURE_NAMES)), key=lambda k: (-abs(z[k]), k)):
            best.setdefault(_CONCERNS[j], j)
        for concern, j in best.items():
            if len(out) >= MAX_REASONS:
                break
            if concern in covered or (out and abs(z[j]) < REASON_MIN_Z):
                continue
            out.append(self._phrase(j, x, z[j]))
        return tuple(out)  # never empty: the top concern is always taken when nothing came before

    def _phrase(self, j: int, x: list[float], z: float) -> str:  # noqa: PLR0911 (one per wording)
        s, t = self._stats[j], self._texts[j]
        if t is None:
            t = self._texts[j] = _Texts.of(s)
        stock, ratio, pos, value, price, lo, hi = x
        if j == 0:
            return f"stock {_n(stock)} {_compare(stock, z, s, t.usual, t.typical)}"
        if j == 1:
            if stock < lo:
                return f"stock {_n(stock)} is below its min level {_n(lo)} (usually {t.usual} times the min)"
            return f"stock {_n(stock)} is {_times(ratio)} its min level {_n(lo)} (usually {t.usual} times)"
        if j == 2:
            span = t.span
            if stock > hi:
                return f"stock {_n(stock)} is {_times(stock / max(hi, 1.0))} its max level {_n(hi)} {span}"
            if stock < lo:
                return f"stock {_n(stock)} is below its min level {_n(lo)} {span}"
            return f"stock {_n(stock)} sits {_pct(pos)} of the way from min {_n(lo)} to max {_n(hi)} {span}"
        if j == 3:
            return f"stock value {_money(value)} {_compare(value, z, s, t.money, t.typical_money)}"
        if j == 4:
            return f"price {_money(price)} {_compare(price, z, s, t.money, t.typical_money)}"
        name, level = ("min level", lo) if j == 5 else ("max level", hi)
        return f"{name} {_n(level)} {_compare(level, z, s, t.usual, t.typical)}"


@dataclass(frozen=True, slots=True)
class _Texts:
    """The parts of one feature's reasons that depend only on its training statistics."""

    usual: str  # "8-15": the middle half, as a count
    money: str  # "8.00-15.00": the middle half, as money
    typical: str  # the median, as a count
    typical_money: str  # the median, as money
    span: str  # "(usually 20%-80% of the way from min to max)"

    @classmethod
    def of(cls, s: FeatureStats) -> _Texts:
        return cls(
            usual=f"{_n(s.p25)}-{_n(s.p75)}",
            money=f"{_money(s.p25)}-{_money(s.p75)}",
            typical=_n(s.p50),
            typical_money=_money(s.p50),
            span=f"(usually {_pct(s.p25)}-{_pct(s.p75)} of the way from min to max)",
        )


def _compare(value: float, z: float, s: FeatureStats, usual: str, typical: str) -> str:
    """'is 80x the typical 12.00 (usual 8.00-15.00)' / 'is far above the usual 8.00-15.00'."""
    if z > 0 and s.p50 > 0 and value / s.p50 >= 3:
        return f"is {_times(value / s.p50)} the typical {typical} (usual {usual})"
    far = "far " if abs(z) >= 2 * REASON_MIN_Z else ""
    if z == 0:
        return f"is unusual in combination with the other values (usual {usual})"
    return f"is {far}{'above' if z > 0 else 'below'} the usual {usual}"


def _n(x: float) -> str:
    return f"{x:,.0f}" if x == int(x) and abs(x) < 1e15 else f"{x:,.4g}"


def _money(x: float) -> str:
    return f"{x:,.2f}" if abs(x) < 1e15 else f"{x:,.4g}"


def _times(k: float) -> str:
    return f"{k:,.0f}x" if abs(k) >= 10 else f"{k:.1f}x"


def _pct(fraction: float) -> str:
    return f"{fraction * 100:,.0f}%" if abs(fraction) < 1e6 else f"{fraction * 100:.3g}%"
