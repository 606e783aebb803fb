"""Data-quality rules are data: parsed once, evaluated per batch, named in every result."""

from __future__ import annotations

import numpy as np
import pytest

from detection import DEFAULT_RULES, RuleError, RuleSet
from detection.rules import RULE_VARIABLES


def env(**cols: list[float]) -> dict[str, np.ndarray]:
    n = len(next(iter(cols.values())))
    base = {name: np.full(n, np.nan) for name in RULE_VARIABLES}
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


def test_a_revert_alerts_when_older_and_only_hints_without_a_time() -> None:
    rules = RuleSet()
    # the item went 10 -> 7; a report brings back 10 stamped earlier, then one without a time
    e = env(
        stock=[10, 10, 8, 10],
        prev_stock=[7, 7, 7, 11],
        prev_min=[2, 2, 2, 2],
        left_stock=[10, 10, 10, 10],
        stock_change=[3, 3, 1, -1],
        age=[60, np.nan, np.nan, np.nan],
    )
    bits = rules.evaluate(e, 4)
    assert rules.fired(int(bits[0])) == ("replayed_stock", "reverted_stock", "out_of_order")
    assert rules.fired(int(bits[1])) == ("reverted_stock",)
    assert bits[2] == 0
    assert bits[3] == 0  # a sale of the unit a return just brought (10 -> 11 -> 10) is ordinary motion
    assert bits[0] & rules.alert_mask and not bits[1] & rules.alert_mask
    assert rules.floor_of(bits).tolist() == [85.0, 45.0, 0.0, 0.0]


def test_severity_sets_the_floor_and_whether_a_rule_alerts() -> None:
    rules = RuleSet([{"name": "low", "when": "stock < 0", "severity": 60},
                     {"name": "hint", "when": "stock < 5", "severity": 20},
                     {"name": "off", "when": "stock < 100", "enabled": False}])  # fmt: skip
    assert rules.names == ("low", "hint")
    bits = rules.evaluate(env(stock=[-1, 3, 50]), 3)
    assert rules.floor_of(bits).tolist() == [60.0, 20.0, 0.0]
    assert rules.alert_mask == 0b01
    assert rules.table()[1]["severity"] == 20.0


@pytest.mark.parametrize("severity", [-1, 101, "high", float("nan")])
def test_a_severity_outside_0_to_100_is_refused(severity: object) -> None:
    with pytest.raises(RuleError, match="severity"):
        RuleSet([{"name": "x", "when": "stock < 0", "severity": severity}])


def test_rises_that_no_receipt_or_return_explains_are_hints() -> None:
    rules = RuleSet()
    # usual decrease 1 unit, usual increase (a restock) 10 units
    e = env(
        stock=[3, 11, 18, 5, 3, 6, 6, 6, 6],
        prev_stock=[1, 1, 8, 1, 1, 6, 6, 6, 6],
        prev_min=[1, 1, 2, 2, 2, 2, 2, 2, 2],
        left_stock=[3, 3, 9, 2, 4, 7, 7, 7, 7],
        stock_change=[2, 10, 10, 4, 2, 0, 0, 0, 0],
        usual_drop=[1, 1, 1, 1, 1, 1, 1, 1, 1],
        usual_rise=[10, 10, 10, 10, 10, 10, 10, 10, 10],
        unchanged=[0, 0, 0, 0, 0, 1, 1, 1, 1],
        repeated=[0, 0, 0, 0, 0, 0, 1, 0, 0],
        complete=[0, 0, 0, 0, 0, 0, 0, 1, 1],
        last_complete=[0, 0, 0, 0, 0, 0, 0, 1, 0],
    )
    bits = rules.evaluate(e, 9)
    assert [rules.fired(int(b)) for b in bits] == [
        ("reverted_stock_small_rise",),  # back to the level before the last sale, far below a restock
        (),  # a restock of the usual size while one is due
        ("rise_not_due",),  # a restock-sized rise above the min level
        ("unexplained_rise",),  # four sales' worth: neither a return nor a restock
        (),  # a return of about one sale
        ("unchanged_update",),  # a change event that changes nothing
        (),  # the same from an item whose feed re-sends its state (a nightly full state)
        ("unchanged_update",),  # a full state repeating a full state: a redelivery
        (),  # a full state after a delta: more fields than any message it could repeat (a sync)
    ]
    assert not (bits & np.uint32(rules.alert_mask)).any()  # hints rank, they never alert alone
    assert rules.floor_of(bits).tolist() == [45.0, 0.0, 30.0, 30.0, 0.0, 30.0, 0.0, 30.0, 0.0]


def test_a_full_state_moving_the_stock_is_a_hint_only_where_full_states_repeat_the_deltas() -> None:
    rules = RuleSet()
    e = env(
        stock=[80, 80, 80, 82, 80],
        prev_stock=[82, 82, 82, 82, 82],
        stock_change=[-2, -2, -2, 0, -2],
        complete=[1, 1, 0, 1, 1],
        repeated=[1, 0, 1, 1, 1],
        flag_run=[0, 0, 0, 0, 1],
    )
    fired = [rules.fired(int(b)) for b in rules.evaluate(e, 5)]
    assert fired == [
        ("full_state_moves_stock",),  # a nightly-sync feed: its full states confirm the deltas
        (),  # a feed whose full states are its change events
        (),  # a delta (the stock alone) of the same item
        (),  # a full state repeating the stock
        (),  # after a flagged delta (not taken): the full state brings the motion it hid
    ]
