"""Calibrated 0-100 severity: how rare a score is among the training (normal) scores.

Elastic-style normalisation. At training time the score quantiles at tail probabilities
``10**-5 .. 1`` are stored (:func:`calibrate`); a score's tail probability ``p`` is read back by
interpolation in log10 space (extrapolated below the lowest quantile along its last slope, capped
at 10**-12). The model threshold sits at the alert budget's probability ``b``, which maps to 50::

    severity = 50 * log10(p) / log10(b)                       p >= b  (not an alert: 0-50)
    severity = 50 + 50 * min(1, log10(b / p) / DECADES)       p <  b  (an alert: 50-100)

A firing data-quality rule lifts the severity to at least its own severity (default
:data:`RULE_FLOOR`; :mod:`detection.rules`). Levels of an alert:
low < 65 <= medium < 80 <= high < 95 <= critical.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import numpy.typing as npt

__all__ = ["LEVELS", "RULE_FLOOR", "SeverityScale", "calibrate", "level_of", "levels_of"]

FloatArray = npt.NDArray[np.float64]
Level = Literal["none", "low", "medium", "high", "critical"]

TAIL_LOG10: Final = np.linspace(-5.0, 0.0, 51)
DECADES: Final = 3.0  # alerts 1000x rarer than the budget reach 100
RULE_FLOOR: Final = 85.0
LEVELS: Final[tuple[tuple[float, Level], ...]] = (
    (95.0, "critical"),
    (80.0, "high"),
    (65.0, "medium"),
    (0.0, "low"),
)
_MIN_LOG10: Final = -12.0
_CUTS: Final = np.array([cut for cut, _ in reversed(LEVELS)])  # ascending, for searchsorted
_BY_CUT: Final[tuple[Level, ...]] = tuple(level for _, level in reversed(LEVELS))


def calibrate(scores: FloatArray) -> list[float]:
    """Score quantiles at the tail probabilities ``10**TAIL_LOG10`` (ascending), for the metadata."""
    return [float(q) for q in np.quantile(scores, 10.0**TAIL_LOG10)]


def level_of(severity: float, is_anomaly: bool) -> Level:
    if not is_anomaly:
        return "none"
    return next(level for cut, level in LEVELS if severity >= cut)


def levels_of(severity: FloatArray, is_anomaly: npt.NDArray[np.bool_]) -> list[Level]:
    """:func:`level_of` of each row, the cuts looked up for all rows at once."""
    code = np.searchsorted(_CUTS, severity, side="right") - 1  # the last cut at or below
    code[~is_anomaly] = -2
    odd = (code == -1) | (np.isnan(severity) & is_anomaly)  # below every cut or NaN: level_of says why
    names: list[Level] = [_BY_CUT[c] if c >= 0 else "none" for c in code.tolist()]
    for j in np.flatnonzero(odd).tolist():
        names[j] = level_of(float(severity[j]), True)
    return names


class SeverityScale:
    """Maps scores to 0-100 severities for one model (from its stored quantiles)."""

    __slots__ = ("_budget_log10", "_q", "_slope")

    def __init__(self, quantiles: list[float], budget: float) -> None:
        q = np.maximum.accumulate(np.asarray(quantiles, dtype=np.float64))
        if q.shape != TAIL_LOG10.shape:
            raise ValueError(f"expected {TAIL_LOG10.size} quantiles, got {q.size}")
        self._q = q
        k = max(1, int(np.searchsorted(q, q[0], side="right")))  # first quantile above the lowest
        k = min(k + 4, q.size - 1)
        self._slope = (TAIL_LOG10[k] - TAIL_LOG10[0]) / max(q[k] - q[0], 1e-12)  # log10 p per unit
        self._budget_log10 = float(np.log10(budget))

    def arrays(self) -> tuple[FloatArray, FloatArray, float, float]:
        """(quantiles, their log10 tail probabilities, slope below, log10 budget) for the kernel."""
        return self._q, TAIL_LOG10, float(self._slope), self._budget_log10

    def tail_log10(self, scores: FloatArray) -> FloatArray:
        """log10 of the share of training scores at or below each score."""
        inside = np.interp(scores, self._q, TAIL_LOG10)
        below = TAIL_LOG10[0] - self._slope * (self._q[0] - scores)
        return np.maximum(np.where(scores < self._q[0], below, inside), _MIN_LOG10)

    def severity(self, scores: FloatArray, floor: FloatArray) -> FloatArray:
        """0-100 per row (see the module docstring); ``floor``: the fired rules' severity, 0 for none."""
        lp, b = self.tail_log10(scores), self._budget_log10
        normal = 50.0 * np.clip(lp / b, 0.0, 1.0)
        alert = 50.0 + 50.0 * np.minimum(1.0, (b - lp) / DECADES)
        sev = np.where(lp >= b, normal, alert)
        return np.maximum(sev, floor)
