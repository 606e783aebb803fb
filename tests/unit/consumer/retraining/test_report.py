"""The model report: words in titles and axes, threshold and budget marked, outliers clipped and
counted, evaluation figures and the previous version — asserted on the matplotlib objects."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from consumer.retraining.report import Previous, ReportData, build_figure, render_report, robust_range
from consumer.retraining.report_words import feature_title
from detection import CHANGE_FEATURE_NAMES, FEATURE_NAMES


def data(*, detector: str = "default", promoted: bool = True, previous: bool = True) -> ReportData:
    rng = np.random.default_rng(0)
    names = CHANGE_FEATURE_NAMES if detector == "default" else FEATURE_NAMES
    scores = np.concatenate([rng.normal(0.5, 0.1, 5000), [-40.0, 90.0]])  # two wild outliers
    features = rng.normal(0.0, 1.0, (5000, len(names)))
    features[0, 0] = 1e9
    return ReportData(
        name="20261202T010203Z-abcdef12", detector=detector, promoted=promoted,
        reasons=[] if promoted else ["the candidate catches 50.0% of planted reporting errors"],
        scores=scores, sample_words="5,000 fresh normal updates of the snapshot's items", threshold=0.0,
        alert_share=0.0005, alert_words="alert budget 0.5 per 1,000", features=features, feature_names=names,
        previous=Previous("20261201T000000Z-00000000", "default", rng.normal(0.45, 0.1, 5000), 0.0,
                          {"alert budget": "0.5 per 1,000 normal updates"}) if previous else None,
        labelled={"labels": 25, "confirmed": 10, "candidate": {"precision": 0.8, "recall": 0.9, "flagged": 11},
                  "current": {"precision": 0.7, "recall": 0.9, "flagged": 13}},
        planted={"candidate": {"price_x10": 1.0, "all": 0.9}, "current": {"price_x10": 1.0, "all": 0.88}},
        figures={"alerts per 1,000 normal updates": "0.70 (budget 0.5, at most 1.5)"},
    )  # fmt: skip


def texts(fig: object) -> str:
    from matplotlib.text import Text

    return "\n".join(t.get_text() for t in fig.findobj(Text))  # type: ignore[attr-defined]


def test_the_report_is_a_png_file(tmp_path: Path) -> None:
    path = render_report(tmp_path / "v" / "report.png", data())
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert [p.name for p in path.parent.iterdir()] == ["report.png"]  # no temp file left


def test_titles_axes_threshold_budget_and_previous_version_are_drawn() -> None:
    fig = build_figure(data())
    score_ax = fig.axes[0]
    assert score_ax.get_title() == "Anomaly scores of 5,000 fresh normal updates of the snapshot's items"
    assert score_ax.get_xlabel() == "anomaly score (lower = more anomalous)"
    assert score_ax.get_ylabel() == "count (log scale)"
    legend = [t.get_text() for t in score_ax.get_legend().get_texts()]
    assert any(t.startswith("threshold 0: below it is an alert") for t in legend)
    assert "alert budget 0.5 per 1,000 (its score quantile)" in legend
    assert "previous version (20261201T000000Z-00000000)" in legend
    all_text = texts(fig)
    assert (
        "Model 20261202T010203Z-abcdef12: default detector (changes per item), promoted (now serving)"
        in all_text
    )
    assert "outliers clipped into the edge bins: 1 below, 1 above" in all_text  # -40 and 90, counted
    lo, hi = score_ax.get_xlim()
    assert lo > -5 and hi < 5
    feature_axes = fig.axes[2:]
    assert feature_axes[0].get_title() == "Stock against the item's max level"
    assert feature_axes[-1].get_title() == "Time since the item's last update against its usual gap"
    assert feature_axes[0].get_xlabel() == "log(1 + stock / max level)  [stock_vs_max]"
    assert all(ax.get_xlabel() and ax.get_ylabel() == "count (log scale)" for ax in feature_axes)
    assert feature_axes[0].get_xlim()[1] < 100  # the 1e9 value is clipped


@pytest.mark.parametrize("detector", ["default", "seed"])
def test_every_feature_panel_is_titled_in_words_not_its_code_name(detector: str) -> None:
    names = CHANGE_FEATURE_NAMES if detector == "default" else FEATURE_NAMES
    titles = [ax.get_title() for ax in build_figure(data(detector=detector)).axes[2:]]
    assert len(titles) == len(names) == len(set(titles))
    for name, title in zip(names, titles, strict=True):
        assert title == feature_title(name) and "_" not in title and " " in title, (name, title)


def test_notes_and_legend_sit_outside_the_bars_and_an_identical_previous_version_is_said() -> None:
    same = data()
    assert same.previous is not None
    same.previous.scores = same.scores.copy()
    fig = build_figure(same)
    fig.savefig(io.BytesIO(), format="png", dpi=40)  # lays the figure out
    score_ax = fig.axes[0]
    legend = score_ax.get_legend()
    assert "previous version (20261201T000000Z-00000000): the same scores as this model" in [
        t.get_text() for t in legend.get_texts()
    ]
    axes_box = score_ax.get_window_extent()
    assert legend.get_window_extent().y1 < axes_box.y0  # below the plot, not over the low scores
    (note,) = [t for t in score_ax.texts if t.get_text().startswith("outliers clipped")]
    assert note.get_window_extent().y0 >= axes_box.y1  # above the plot, where no bar hides it


def test_evaluation_figures_and_a_rejection_are_in_words() -> None:
    all_text = texts(build_figure(data(detector="seed", promoted=False, previous=False)))
    assert (
        "Rejected candidate 20261202T010203Z-abcdef12: seed detector (each item's state), not promoted"
        in all_text
    )
    assert "the candidate catches 50.0% of planted reporting errors" in all_text
    assert "Analyst labels: 25 (10 confirmed)" in all_text
    assert "this model: precision 0.80, recall 0.90 (11 flagged)" in all_text
    assert "previous:   precision 0.70, recall 0.90 (13 flagged)" in all_text
    assert "Planted reporting errors caught: 90.0% (previous version 88.0%)" in all_text
    assert "Previous version: none (first model)" in all_text


def test_robust_range_counts_what_it_clips() -> None:
    values = np.concatenate([np.arange(1000.0), [1e12, -1e12, np.nan]])
    assert robust_range(values) == (0.0, 999.0, 1, 1)  # the core 1-99 % is ~10-989: all of it is kept
    assert robust_range(values, include=[-5.0])[:3] == (-5.0, 999.0, 1)
    assert robust_range(np.full(5, 3.0))[:2] == (2.5, 3.5)
