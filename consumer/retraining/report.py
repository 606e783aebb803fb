"""The model report a person understands: one PNG per retrain, promoted or rejected.

What it shows (:func:`build_figure`, rendered with matplotlib's Agg backend, no display needed):

* a title in words: the version (or rejected candidate), which detector, the decision and why;
* the candidate's score distribution on the gate's sample (the snapshot's items for ``seed``,
  fresh normal updates of them for ``default``), the threshold and the alert budget (the score
  quantile the budget or contamination names) marked, and the previous version's scores on the
  same sample beside it when it is of the same kind;
* the figures: alert rate against the budget, the evaluation on analyst labels when there are
  enough (precision and recall, candidate vs current), planted reporting errors caught (``default``)
  and the previous version's own figures (also when its kind differs);
* each feature's distribution, in words, on a robust scale: outliers clipped into the edge bins and counted (:func:`robust_range`).

The file sits beside the model but is informational: not in the checksummed manifest, never loaded.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from consumer.retraining.report_words import DETECTOR_WORDS, feature_axis, feature_title

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["REPORT_FILE", "Previous", "ReportData", "build_figure", "render_report", "robust_range"]

FloatArray = npt.NDArray[np.float64]
REPORT_FILE = "report.png"
MAX_ROWS = 200_000  # rows drawn at most (a uniform subsample beyond)
CORE_PERCENTILES = (1.0, 99.0)


@dataclass(slots=True)
class Previous:
    """The model serving before this run: its scores on the same sample (same kind only) and figures."""

    version: str | None
    detector: str
    scores: FloatArray | None = None
    threshold: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ReportData:
    """Everything the report draws; built by the retrain from what its gate measured."""

    name: str  # the version, or the rejected candidate's id
    detector: str
    promoted: bool
    reasons: Sequence[str]
    scores: FloatArray
    sample_words: str  # what the scores are of, e.g. "60,000 fresh normal updates of the snapshot's items"
    threshold: float
    alert_share: float  # the budget (default) or contamination (seed) as a share of the sample
    alert_words: str  # e.g. "alert budget 0.5 per 1,000 normal updates"
    features: FloatArray
    feature_names: Sequence[str]
    previous: Previous | None = None
    labelled: Mapping[str, Any] | None = None  # gate checks.labelled
    planted: Mapping[str, Any] | None = None  # gate checks.planted_recall (default)
    figures: dict[str, Any] = field(default_factory=dict)


def robust_range(values: FloatArray, *, include: Sequence[float] = ()) -> tuple[float, float, int, int]:
    """A range that outliers do not stretch, and how many finite values lie below and above it.

    The values within one core width of the core (the 1-99 % percentiles), widened to hold
    ``include`` (e.g. the threshold): a long tail stays visible, a value far beyond it is an outlier."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0, 0, 0
    p_lo, p_hi = (float(v) for v in np.percentile(finite, CORE_PERCENTILES))
    width = p_hi - p_lo
    inside = finite[(finite >= p_lo - width) & (finite <= p_hi + width)]
    lo, hi = min([float(inside.min()), *include]), max([float(inside.max()), *include])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi, int(np.sum(finite < lo)), int(np.sum(finite > hi))


def _hist(ax: Axes, values: FloatArray, lo: float, hi: float, **kw: Any) -> None:
    """A histogram on [lo, hi] with everything outside clipped into the edge bins."""
    finite = values[np.isfinite(values)]
    ax.hist(np.clip(finite, lo, hi), bins=50, range=(lo, hi), **kw)


def _clip_note(below: int, above: int) -> str:
    return f"outliers clipped into the edge bins: {below:,} below, {above:,} above" if below or above else ""


def _title(data: ReportData) -> str:
    kind = DETECTOR_WORDS.get(data.detector, data.detector)
    if data.promoted:
        return f"Model {data.name}: {kind}, promoted (now serving)"
    why = data.reasons[0] if data.reasons else "the gate refused it"
    return f"Rejected candidate {data.name}: {kind}, not promoted\n{why[:160]}"


def _note_above(ax: Axes, note: str, fontsize: float) -> None:
    """The count of clipped outliers between the title and the plot, where no bar or legend hides it."""
    ax.text(
        0.5, 1.01, note, transform=ax.transAxes, ha="center", va="bottom", fontsize=fontsize, color="#555555"
    )


def _same_counts(a: FloatArray, b: FloatArray, lo: float, hi: float) -> bool:
    """Whether two score sets draw the same histogram (e.g. the previous model was trained on the same data)."""
    counts = [np.histogram(np.clip(v[np.isfinite(v)], lo, hi), bins=50, range=(lo, hi))[0] for v in (a, b)]
    return bool(np.array_equal(counts[0], counts[1]))


def _score_panel(ax: Axes, data: ReportData) -> float:
    """Draw the score histogram; returns its title's pad (the figures panel's title lines up with it)."""
    prev = data.previous
    both = data.scores if prev is None or prev.scores is None else np.concatenate([data.scores, prev.scores])
    marks = [data.threshold] + ([prev.threshold] if prev is not None and prev.scores is not None else [])
    lo, hi, below, above = robust_range(both, include=marks)
    _hist(ax, data.scores, lo, hi, color="#4477aa", alpha=0.75, label=f"this model ({data.name})", log=True)
    if prev is not None and prev.scores is not None:
        same = ": the same scores as this model" if _same_counts(data.scores, prev.scores, lo, hi) else ""
        # dashed and on top, so the outline stays visible where it follows this model's bars exactly
        _hist(ax, prev.scores, lo, hi, histtype="step", color="#222222", linestyle="--", linewidth=1.2, log=True,
              zorder=3, label=f"previous version ({prev.version or 'unnamed'}){same}")  # fmt: skip
        ax.axvline(
            prev.threshold, color="#222222", linestyle=":", label=f"previous threshold {prev.threshold:g}"
        )
    rate = float(np.mean(data.scores < data.threshold)) if data.scores.size else 0.0
    ax.axvline(data.threshold, color="#cc3311", linestyle="--",
               label=f"threshold {data.threshold:g}: below it is an alert ({rate:.2%} of the sample)")  # fmt: skip
    if data.scores.size and 0.0 < data.alert_share < 1.0:
        q = float(np.quantile(data.scores, data.alert_share))
        ax.axvline(np.clip(q, lo, hi), color="#ee7733", linestyle="-.",
                   label=f"{data.alert_words} (its score quantile)")  # fmt: skip
    note = _clip_note(below, above)
    pad = 16.0 if note else 6.0
    ax.set_title(f"Anomaly scores of {data.sample_words}", pad=pad)
    if note:
        _note_above(ax, note, 8)
    ax.set_xlabel("anomaly score (lower = more anomalous)")
    ax.set_ylabel("count (log scale)")
    # below the plot: inside it, the legend would cover the low scores, the ones that matter
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=7, frameon=False)
    return pad


def _pr(figures: Mapping[str, Any] | None) -> str:
    if not figures:
        return "-"
    p, r = (figures.get(k) for k in ("precision", "recall"))
    p_text, r_text = ("-" if v is None else f"{v:.2f}" for v in (p, r))
    return f"precision {p_text}, recall {r_text} ({figures.get('flagged', 0)} flagged)"


def figure_lines(data: ReportData) -> list[str]:
    """The text of the figures panel, one line each."""
    lines = ["Decision: " + ("promoted" if data.promoted else "rejected")]
    lines += [f"  - {r[:110]}" for r in data.reasons[:4]]
    lines += [f"{key}: {value}" for key, value in data.figures.items()]
    labelled = data.labelled or {}
    if labelled.get("skipped") or not labelled:
        lines.append(f"Analyst labels: {labelled.get('labels', 0)} ({labelled.get('skipped', 'none')})")
    else:
        lines.append(f"Analyst labels: {labelled['labels']} ({labelled.get('confirmed', 0)} confirmed)")
        lines.append(f"  this model: {_pr(labelled.get('candidate'))}")
        lines.append(f"  previous:   {_pr(labelled.get('current'))}")
    if data.planted:
        cand, cur = data.planted.get("candidate", {}), data.planted.get("current")
        lines.append(f"Planted reporting errors caught: {cand.get('all', 0):.1%}"
                     + (f" (previous version {cur['all']:.1%})" if cur else ""))  # fmt: skip
        lines += [f"  {k}: {v:.0%}" for k, v in cand.items() if k != "all"]
    prev = data.previous
    if prev is None:
        lines.append("Previous version: none (first model)")
    else:
        lines.append(
            f"Previous version: {prev.version or 'unnamed'} ({DETECTOR_WORDS.get(prev.detector, prev.detector)})"
        )
        lines += [f"  {key}: {value}" for key, value in prev.figures.items()]
    return lines


def _feature_panel(ax: Axes, name: str, column: FloatArray) -> None:
    lo, hi, below, above = robust_range(column)
    _hist(ax, column, lo, hi, color="#228833", log=True)
    note = _clip_note(below, above)
    ax.set_title(feature_title(name), fontsize=9, pad=12 if note else 6)
    if note:
        _note_above(ax, note, 6.5)
    ax.set_xlabel(feature_axis(name), fontsize=8)
    ax.set_ylabel("count (log scale)", fontsize=8)


def build_figure(data: ReportData) -> Figure:
    """The report as a matplotlib figure (Agg; the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if data.scores.shape[0] > MAX_ROWS:
        data.scores = data.scores[
            np.random.default_rng(0).choice(data.scores.shape[0], MAX_ROWS, replace=False)
        ]
    if data.features.shape[0] > MAX_ROWS:
        data.features = data.features[
            np.random.default_rng(1).choice(data.features.shape[0], MAX_ROWS, replace=False)
        ]
    cols = 4
    rows = 1 + -(-len(data.feature_names) // cols)
    fig = Figure(figsize=(18, 4.2 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, cols)
    pad = _score_panel(fig.add_subplot(grid[0, :2]), data)
    text = fig.add_subplot(grid[0, 2:])
    text.axis("off")
    text.set_title("Figures", pad=pad)
    text.text(0.0, 1.0, "\n".join(figure_lines(data)), va="top", ha="left", family="monospace", fontsize=8,
              transform=text.transAxes)  # fmt: skip
    for j, name in enumerate(data.feature_names):
        _feature_panel(fig.add_subplot(grid[1 + j // cols, j % cols]), name, data.features[:, j])
    fig.suptitle(_title(data), fontsize=12)
    return fig


def render_report(path: Path, data: ReportData) -> Path:
    """Write the report PNG to ``path`` atomically (temp file + rename) and return ``path``."""
    fig = build_figure(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        fig.savefig(tmp, format="png", dpi=72)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
