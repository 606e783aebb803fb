"""The pipeline bench's derived figures: per-round ratios and CPU ratios."""

from __future__ import annotations

import pytest

from bench.pipeline import _cpu_ratio, _round_median


def test_round_median_pairs_each_round_with_the_same_round_of_the_seed_row() -> None:
    row = {"all_events_per_s": [50.0, 90.0, 80.0]}
    seed = {"all_events_per_s": [100.0, 90.0, 40.0]}
    # rounds: 0.5, 1.0, 2.0 -> 1.0 (a ratio of the best runs would say 90 / 100 = 0.9)
    assert _round_median(row, seed) == pytest.approx(1.0)


def test_cpu_ratio_is_higher_when_the_row_needs_less_cpu_and_blank_without_figures() -> None:
    seed = {"min_loop_cpu_us": 10.0, "min_process_cpu_us": 12.0}
    assert _cpu_ratio({"min_loop_cpu_us": 12.5, "min_process_cpu_us": 16.0}, seed) == "0.80 / 0.75"
    assert _cpu_ratio({}, seed) == ""
