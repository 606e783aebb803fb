"""Data-quality rules are data: parsed once, evaluated per batch, named in every result."""

from __future__ import annotations

import numpy as np
import pytest

from detection import DEFAULT_RULES, RuleError, RuleSet


def env(**cols: list[float]) -> dict[str, np.ndarray]:
    n = len(next(iter(cols.values())))
    base = {name: np.full(n, np.nan) for name in ("stock", "min", "max", "price", "prev_stock", "prev_min",
                                                   "prev_max", "prev_price", "age", "unchanged")}  # fmt: skip
    base.update({k: np.asarray(v, dtype=float) for k, v in cols.items()})
    return base


def test_default_rules_fire_on_what_they_name() -> None:
    rules = RuleSet()
    e = env(stock=[-1, 10, 10, 10, 5000], min=[1, 20, 1, 1, 1], max=[10, 10, 0, 10, 10],
            price=[1, 1, 1, 0, 1], prev_max=[10, 10, 10, 10, 10], prev_price=[1, 1, 1, 1, 1])  # fmt: skip
    fired = [rules.fired(int(b)) for b in rules.evaluate(e, 5)]
    assert "negative_stock" in fired[0]
    assert "min_ge_max" in fired[1]
    assert "max_zero" in fired[2]
    assert "price_nonpositive_with_stock" in fired[3]
    assert "stock_10x_max" in fired[4]


def test_unknown_values_never_fire() -> None:
    rules = RuleSet()
    e = env(stock=[5.0], min=[1.0], max=[10.0], price=[2.0])  # a new item: no prev_*, no age
    assert rules.evaluate(e, 1).tolist() == [0]


def test_a_custom_table_replaces_the_defaults() -> None:
    rules = RuleSet([{"name": "big_order", "when": "stock > 2 * prev_stock and prev_stock > 0", "says": "x"}])
    bits = rules.evaluate(env(stock=[30, 10], prev_stock=[10, 10]), 2)
    assert [rules.fired(int(b)) for b in bits] == [("big_order",), ()]
    assert rules.table()[0]["kind"] == "data_quality"


@pytest.mark.parametrize(
    "spec",
    [{"name": "x", "when": "stok < 0"}, {"name": "x", "when": "stock <> 0"}, {"when": "stock < 0"},
     {"name": "x", "when": "2 * 3 < stock"}],
)  # fmt: skip
def test_bad_rules_are_refused_with_a_reason(spec: dict[str, str]) -> None:
    with pytest.raises(RuleError):
        RuleSet([spec])


def test_default_table_round_trips_as_plain_data() -> None:
    assert RuleSet(RuleSet(DEFAULT_RULES).table()).table() == RuleSet().table()
