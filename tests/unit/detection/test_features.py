"""The seven features: the seed's worked example, order, and vectorised forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detection import FEATURE_NAMES, feature_matrix, parse_item
from detection.features import features_from_columns

SEED_EXAMPLE = [
    {"stock_quantity": 100, "min_stock": 50, "max_stock": 200, "price": 10},
    {"stock_quantity": 150, "min_stock": 50, "max_stock": 200, "price": 15},
    {"stock_quantity": 75, "min_stock": 50, "max_stock": 200, "price": 12},
    {"stock_quantity": 50000, "min_stock": 50, "max_stock": 200, "price": 10},
    {"stock_quantity": 120, "min_stock": 50, "max_stock": 200, "price": 8},
]


def test_feature_names_are_the_seeds_order() -> None:
    assert FEATURE_NAMES == (
        "stock_quantity",
        "stock_ratio",
        "stock_range_position",
        "value_at_risk",
        "price",
        "min_stock_level",
        "max_stock_level",
    )


def test_seed_worked_example() -> None:
    x = feature_matrix([parse_item(d, require_id=False) for d in SEED_EXAMPLE])
    assert x.dtype == np.float64
    assert x.shape == (5, 7)
    np.testing.assert_allclose(x[0], [100, 2.0, 50 / 150, 1000, 10, 50, 200], rtol=0, atol=1e-15)
    assert x[0, 2] == pytest.approx(0.3333333333333333)
    # the guide prints 331.0; its formula gives (50000 - 50) / 150 = 333.0 and the formula wins
    np.testing.assert_array_equal(x[3], [50000, 1000, 333.0, 500000, 10, 50, 200])


def test_guards_against_small_denominators() -> None:
    items = [
        parse_item(
            {"stock_quantity": 7, "min_stock_level": 0, "max_stock_level": 0, "price": 2}, require_id=False
        ),
        parse_item({"stock_quantity": 7, "min_stock_level": 5, "max_stock_level": 5.5}, require_id=False),
        parse_item({"stock_quantity": -5, "min_stock_level": -3, "max_stock_level": -10}, require_id=False),
    ]
    x = feature_matrix(items)
    np.testing.assert_array_equal(x[0, :4], [7, 7, 7, 14])  # max(min, 1) and max(max - min, 1) are 1
    np.testing.assert_array_equal(x[1, 1:3], [7 / 5, 2.0])
    np.testing.assert_array_equal(x[2, :3], [-5, -5, -2])


def test_defaults_feed_the_features() -> None:
    x = feature_matrix([parse_item({"sku": "only-id"})])
    np.testing.assert_array_equal(x[0], [0, 0, -1 / 99, 0, 0, 1, 100])


def test_columns_form_matches_and_checks_lengths() -> None:
    items = [parse_item(d, require_id=False) for d in SEED_EXAMPLE]
    cols = [
        [getattr(it, f) for it in items]
        for f in ("stock_quantity", "min_stock_level", "max_stock_level", "price")
    ]
    np.testing.assert_array_equal(features_from_columns(*cols), feature_matrix(items))
    with pytest.raises(ValueError, match="differ in length"):
        features_from_columns([1, 2], [1], [1, 2], [1, 2])
    assert feature_matrix([]).shape == (0, 7)


bounded = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(bounded, bounded, bounded, bounded)
def test_features_are_finite_and_match_the_scalar_formulas(s: float, lo: float, hi: float, p: float) -> None:
    row = features_from_columns([s], [lo], [hi], [p])[0]
    assert np.all(np.isfinite(row))
    expected = [s, s / max(lo, 1), (s - lo) / max(hi - lo, 1), s * p, p, lo, hi]
    for got, want in zip(row, expected, strict=True):
        assert got == want or math.isclose(got, want, rel_tol=1e-15)
