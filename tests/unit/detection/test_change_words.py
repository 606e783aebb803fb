"""The batch wording of decisions (``ChangeDecisions.words``, ``reasons_of_rows``: which concerns
are far and their ranking found for all rows at once) says what the one-row reference says."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detection.change_decisions import ChangeDecisions
from detection.change_features import CHANGE_FEATURE_NAMES
from detection.change_reasons import FAR, reasons_of_row, reasons_of_rows
from detection.item_state import STATE_DTYPE
from detection.rules import DEFAULT_RULES, RuleSet

FIELDS = STATE_DTYPE.names or ()
RULES = RuleSet(DEFAULT_RULES)
# a feature's interesting values: its threshold (and just either side), multiples of another
# concern's threshold (equal sizes: ties keep the concerns' order), zero, signs, non-finite
FEATURE = st.one_of(
    st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf]),
    st.sampled_from(sorted(FAR.values())).flatmap(
        lambda far: st.sampled_from([far, math.nextafter(far, 0.0), -far, 2 * far, 3 * far, 3.0000001 * far])
    ),
    st.floats(-12.0, 12.0, allow_nan=False),
)
NUMBER = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 9.999, 10.0, 1e6]), st.floats(-1e5, 1e7, allow_nan=False)
)
PEER = st.one_of(st.just(math.nan), st.floats(-5.0, 10.0, allow_nan=False))


# features as multiples of their thresholds: equal and nearly equal sizes across concerns
SCALE = {k: FAR.get(name, 1.0) for k, name in enumerate(CHANGE_FEATURE_NAMES)}
SIZED = st.lists(
    st.sampled_from([0.0, 0.999, 1.0, 2.0, 3.0, 3.0000001, -2.0, -3.0]),
    min_size=len(CHANGE_FEATURE_NAMES),
    max_size=len(CHANGE_FEATURE_NAMES),
).map(lambda sizes: [size * SCALE[k] for k, size in enumerate(sizes)])


def row() -> st.SearchStrategy[tuple[list[float], list[float], list[float], float]]:
    return st.tuples(
        st.lists(FEATURE, min_size=len(CHANGE_FEATURE_NAMES), max_size=len(CHANGE_FEATURE_NAMES)) | SIZED,
        st.lists(NUMBER, min_size=len(FIELDS), max_size=len(FIELDS)),
        st.lists(NUMBER, min_size=4, max_size=4),
        PEER,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(row(), st.integers(-2, 5)), min_size=1, max_size=12))
def test_reasons_of_rows_is_reasons_of_row_for_each_row(
    rows: list[tuple[tuple[list[float], list[float], list[float], float], int]],
) -> None:
    features, baseline, new, peers = (np.array([r[0][k] for r in rows], np.float64) for k in range(4))
    limits = [limit for _, limit in rows]
    expected = [
        reasons_of_row(f, dict(zip(FIELDS, b, strict=True)), n, p, limit) for ((f, b, n, p), limit) in rows
    ]
    assert reasons_of_rows(features, baseline, new, peers, limits) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(row(), st.booleans(), st.integers(0, 2**32 - 1), st.floats(0.0, 100.0)),
        min_size=1,
        max_size=12,
    ),
    st.data(),
)
def test_words_say_what_level_reasons_kind_and_rules_fired_say(
    rows: list[tuple[tuple[list[float], list[float], list[float], float], bool, int, float]],
    data: st.DataObject,
) -> None:
    n = len(rows)
    bits = np.array([b & ((1 << len(RULES.names)) - 1) for _, _, b, _ in rows], np.uint32)
    decisions = ChangeDecisions(
        scores=np.zeros(n),
        is_anomaly=np.array([flag for _, flag, _, _ in rows]),
        severity_score=np.array([s for *_, s in rows]),
        rule_bits=bits,
        features=np.array([r[0][0] for r in rows], np.float64),
        threshold=0.0,
        rejected={},
        baseline=np.array([r[0][1] for r in rows], np.float64),
        new_values=np.array([r[0][2] for r in rows], np.float64),
        peer_median=np.array([r[0][3] for r in rows], np.float64),
        rules=RULES,
    )
    asked = data.draw(st.lists(st.integers(0, n - 1), max_size=2 * n))
    expected = [
        (decisions.level(i), decisions.reasons(i), decisions.kind(i), decisions.rules_fired(i)) for i in asked
    ]
    assert decisions.words(asked) == expected
