"""Reasons phrased against what the item has: a price step against the previous price, an unmoved
price (or an item with no history, as in ``scan``) against its peers' median."""

from __future__ import annotations

import math

import numpy as np

from detection.change_decisions import ChangeDecisions
from detection.change_features import CHANGE_FEATURE_NAMES
from detection.change_reasons import change_reasons
from detection.item_state import STATE_DTYPE
from detection.rules import DEFAULT_RULES, RuleSet

COL = {name: k for k, name in enumerate(CHANGE_FEATURE_NAMES)}


def reasons(
    *, base: dict[str, float], new: tuple[float, float, float, float], median: float, **f: float
) -> list[str]:
    x = np.zeros(len(CHANGE_FEATURE_NAMES))
    for name, value in f.items():
        x[COL[name]] = value
    record = {"usual_level": base["stock"], "usual_drop": 5.0, "usual_rise": 50.0, "usual_gap": 0.0} | base
    return change_reasons(x, record, np.array(new, dtype=np.float64), math.log(median))


BASE = {"stock": 100.0, "min": 20.0, "max": 200.0, "price": 20.0, "ref_price": 20.0}


def test_a_price_step_is_against_the_previous_price() -> None:
    (text,) = reasons(
        base=BASE, new=(100, 20, 200, 200.0), median=21.0, price_step=math.log(10.0), price_vs_peers=5.0
    )
    assert text == "price 200.00 is 10x the previous 20.00 (regular ~20.00; group median 21.00)"


def test_an_unmoved_price_far_from_its_peers_is_against_their_median() -> None:
    first = BASE | {"price": 2000.0, "ref_price": 2000.0}  # a new item: its record is its own state
    (text,) = reasons(base=first, new=(100, 20, 200, 2000.0), median=30.0, price_vs_peers=6.0)
    assert text == "price 2,000.00 is 67x its group's median 30.00"
    low = BASE | {"price": 0.05, "ref_price": 0.05}
    (text,) = reasons(base=low, new=(100, 20, 200, 0.05), median=26.25, price_vs_peers=-6.0)
    assert text == "price 0.05 is 1/525 of its group's median 26.25"


def test_the_usual_level_is_said_only_when_it_differs() -> None:
    far = math.log1p(30.0)
    assert reasons(
        base=BASE | {"usual_level": 120.0}, new=(6000, 20, 200, 20.0), median=20.0, stock_vs_max=far
    ) == ["stock 6,000 is 30x this item's max level 200 (usually ~120)"]
    new_item = BASE | {"stock": 6000.0}
    assert reasons(base=new_item, new=(6000, 20, 200, 20.0), median=20.0, stock_vs_max=far) == [
        "stock 6,000 is 30x this item's max level 200"
    ]


def test_a_limit_keeps_the_largest_reasons_in_order() -> None:
    x = np.zeros(len(CHANGE_FEATURE_NAMES))
    x[COL["stock_vs_max"]], x[COL["rise_vs_usual"]] = 4.0, 3.0
    x[COL["price_step"]], x[COL["min_step"]] = math.log(12.0), math.log(2.0)
    record = {"usual_level": 100.0, "usual_drop": 5.0, "usual_rise": 50.0, "usual_gap": 0.0} | BASE
    new = np.array([3000.0, 40.0, 200.0, 240.0])
    every = change_reasons(x, record, new, math.log(21.0))
    assert len(every) == 3
    for limit in range(4):
        assert change_reasons(x, record, new, math.log(21.0), limit=limit) == every[:limit]


def test_the_update_gap_is_context_after_what_explains_the_alert() -> None:
    """The gap has no hull penalty: however long the pause, it follows the reasons that explain."""
    long_pause = math.log(500.0)  # far beyond its own threshold (20x), more than the rise beyond its
    texts = reasons(
        base=BASE | {"usual_gap": 3600.0},
        new=(400, 20, 200, 20.0),
        median=20.0,
        rise_vs_usual=math.log1p(6.0),
        gap_vs_usual=long_pause,
    )
    assert texts[0].startswith("stock rose from 100 to 400") and texts[1].startswith("first update in")


def test_an_alert_with_only_the_gap_to_say_is_not_explained_by_it() -> None:
    x = np.zeros(len(CHANGE_FEATURE_NAMES))
    x[COL["gap_vs_usual"]] = math.log(500.0)
    base = np.zeros(1, STATE_DTYPE)
    for name, value in (BASE | {"usual_gap": 3600.0, "usual_drop": 5.0, "usual_rise": 50.0}).items():
        base[name] = value
    matrix = np.stack([base[name].astype(np.float64) for name in STATE_DTYPE.names or ()], axis=1)
    decisions = ChangeDecisions(np.array([-0.1]), np.array([True]), np.array([60.0]), np.zeros(1, np.uint32), x[None, :],
                                0.0, {}, matrix, np.array([[100.0, 20.0, 200.0, 20.0]]), np.array([math.log(20.0)]),
                                RuleSet(DEFAULT_RULES))  # fmt: skip
    first, second = decisions.reasons(0)
    assert first == "unusual combination of changes for this item" and second.startswith("first update in")


def test_an_alerting_rule_leads_and_a_hint_follows_the_history_that_explains() -> None:
    """Rules that alert come first; a hint (it never alerts alone) comes after the item's history."""
    rules = RuleSet(DEFAULT_RULES)
    bit = {name: 1 << k for k, name in enumerate(rules.names)}
    assert not bit["rise_not_due"] & rules.alert_mask and bit["negative_stock"] & rules.alert_mask
    x = np.zeros(len(CHANGE_FEATURE_NAMES))
    x[COL["rise_vs_usual"]] = math.log1p(60.0)
    base = np.zeros(1, STATE_DTYPE)
    for name, value in (BASE | {"usual_drop": 5.0, "usual_rise": 50.0}).items():
        base[name] = value
    matrix = np.stack([base[name].astype(np.float64) for name in STATE_DTYPE.names or ()], axis=1)

    def said(bits: int) -> tuple[str, ...]:
        decisions = ChangeDecisions(np.array([-0.1]), np.array([True]), np.array([90.0]), np.array([bits], np.uint32),
                                    x[None, :], 0.0, {}, matrix, np.array([[3100.0, 20.0, 200.0, 20.0]]),
                                    np.array([math.log(20.0)]), rules)  # fmt: skip
        return decisions.reasons(0)

    hinted = said(bit["rise_not_due"])
    assert hinted[0].startswith("stock rose from 100 to 3,100") and hinted[-1].startswith("rise_not_due:")
    both = said(bit["rise_not_due"] | bit["negative_stock"])
    assert both[0].startswith("negative_stock:") and both[1].startswith("stock rose")
    assert both[-1].startswith("rise_not_due:")
