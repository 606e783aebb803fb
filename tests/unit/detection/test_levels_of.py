"""levels_of (a batch's levels, the cuts looked up at once) says what level_of says for each row."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detection.severity import LEVELS, level_of, levels_of

CUTS = [cut for cut, _ in LEVELS]
SEVERITY = st.one_of(
    st.sampled_from([*CUTS, *(math.nextafter(c, -math.inf) for c in CUTS), 100.0, math.inf, -math.inf, -1.0]),
    st.floats(-10.0, 110.0, allow_nan=False),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(SEVERITY, st.booleans()), max_size=30))
def test_levels_of_is_level_of_of_each_row(rows: list[tuple[float, bool]]) -> None:
    severity, flags = np.array([s for s, _ in rows], np.float64), np.array([f for _, f in rows], bool)
    flagged_below_every_cut = [s for s, f in rows if f and s < 0]
    if flagged_below_every_cut:  # level_of has no level for them: the batch fails as it does
        with pytest.raises(StopIteration):
            level_of(flagged_below_every_cut[0], True)
        with pytest.raises(StopIteration):
            levels_of(severity, flags)
        return
    assert levels_of(severity, flags) == [level_of(s, f) for s, f in rows]


def test_a_nan_severity_is_no_level_but_not_anomalous_is_none() -> None:
    assert levels_of(np.array([math.nan, 70.0]), np.array([False, True])) == ["none", "medium"]
    with pytest.raises(StopIteration):
        levels_of(np.array([math.nan]), np.array([True]))
