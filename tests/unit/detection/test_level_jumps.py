"""Level jumps re-baseline after a consistent run; same-second movement is applied in order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detection import ChangeDetector, parse_updates, train_detector
from detection.decide_reference import decide_batch_reference
from detection.item_state import ItemState
from detection.rules import DEFAULT_RULES, RuleSet
from tests.unit.detection.test_detector import batch, snapshot_docs

DOCS = snapshot_docs(seed=5)
TV = DOCS[1]  # a TV: tens in stock at hundreds


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(DOCS)[0])


def upd(stock: float, price: float | None = None, at: str | None = None) -> dict[str, Any]:
    """An update of the TV: stock only (a sale), or a full report when ``price`` is given."""
    msg: dict[str, Any] = {"item_id": TV["item_id"], "stock_quantity": stock}
    if price is not None:
        msg.update(min_stock_level=TV["min_stock_level"], max_stock_level=TV["max_stock_level"], price=price)
    if at is not None:
        msg["occurred_at"] = at
    return msg


def run(
    detector: ChangeDetector, *messages: dict[str, Any], tv_price: float | None = None
) -> tuple[list[bool], list[tuple[str, ...]], ItemState]:
    """Decide the messages one batch each (kernel) against the snapshot (the TV at ``tv_price`` if
    given, without peers), holding the numpy reference to the same results; then all in one batch, which must agree."""
    solo = {
        "category": "solo-tv",
        "price": tv_price or TV["price"],
    }  # no peers: the model judges changes only
    docs = [dict(d, **solo) if d is TV else d for d in DOCS]
    table = detector.baseline(parse_updates(docs)[0])
    twin = detector.baseline(parse_updates(docs)[0])
    flags, fired = [], []
    for msg in messages:
        d, c = detector.decide_batch(table, batch(msg))
        r, rc = decide_batch_reference(detector, twin, batch(msg))
        np.testing.assert_array_equal(d.is_anomaly, r.is_anomaly)
        np.testing.assert_array_equal(d.rule_bits, r.rule_bits)
        np.testing.assert_array_equal(d.baseline, r.baseline)
        assert dict(c.packed()) == dict(rc.packed())
        c.apply_to(table)
        rc.apply_to(twin)
        flags.append(bool(d.is_anomaly[0]))
        fired.append(d.rules_fired(0))
    one = detector.baseline(parse_updates(docs)[0])
    d, c = detector.decide_batch(one, batch(*messages))
    assert d.is_anomaly.tolist() == flags
    c.apply_to(one)
    after = table.get(TV["item_id"])
    again = one.get(TV["item_id"])
    assert after is not None and again is not None and again.pack() == after.pack()
    return flags, fired, after


def test_a_price_every_report_agrees_on_alerts_three_times_then_becomes_the_baseline(
    detector: ChangeDetector,
) -> None:
    """The snapshot holds a tenth of the price (a decimal shift in Mongo): every report says otherwise."""
    s, p = TV["stock_quantity"], TV["price"]
    flags, fired, after = run(detector, *(upd(s - k, p) for k in range(1, 9)), tv_price=round(p / 10, 2))
    assert flags == [True, True, True, False, False, False, False, False]
    assert fired[0] == ("price_jump_9x",)
    assert after.price == p and after.stock == s - 8
    assert after.ref_price == pytest.approx(p)


def test_a_lasting_tenfold_reprice_with_stock_only_sales_between_the_reports(
    detector: ChangeDetector,
) -> None:
    """Sales that do not carry the price neither break nor extend the run of reports at the new price."""
    s, p = TV["stock_quantity"], TV["price"]
    stream = [upd(s - 1, 10 * p), upd(s - 2), upd(s - 3, 10 * p), upd(s - 4), upd(s - 5), upd(s - 6, 10 * p),
              upd(s - 7), upd(s - 8, 10 * p)]  # fmt: skip
    flags, _, after = run(detector, *stream)
    assert flags == [True, False, True, False, False, True, False, False]
    assert after.price == 10 * p and after.stock == s - 8


def test_a_lasting_cut_to_a_tenth_resets_the_regular_price(detector: ChangeDetector) -> None:
    """The snapshot holds ten times the price: the reports' price is accepted, and so is its regular price."""
    s, p = TV["stock_quantity"], TV["price"]
    flags, fired, after = run(detector, *(upd(s - k, p) for k in range(1, 9)), tv_price=10 * p)
    assert flags == [True, True, True, False, False, False, False, False]
    assert fired[0] == ("price_drop_9x",)
    assert after.ref_price == pytest.approx(p)


def test_a_single_wrong_price_never_becomes_the_baseline(detector: ChangeDetector) -> None:
    s, p = TV["stock_quantity"], TV["price"]
    stream = [
        upd(s - 1, 10 * p),
        upd(s - 2, p),
        upd(s - 3, 10 * p),
        upd(s - 4, p),
        upd(s - 5, 10 * p),
        upd(s - 6, p),
    ]
    flags, _, after = run(detector, *stream)
    assert flags == [True, False, True, False, True, False]  # each wrong report alerts; none sticks
    assert after.price == p


def test_hard_rules_keep_alerting_as_long_as_the_data_is_bad(detector: ChangeDetector) -> None:
    flags, fired, after = run(detector, *(upd(-3 - k) for k in range(8)))
    assert flags == [True] * 8 and all("negative_stock" in f for f in fired)
    assert after.stock == TV["stock_quantity"]


def test_a_level_jump_run_is_not_mixed_with_hard_rule_flags(detector: ChangeDetector) -> None:
    s, p = TV["stock_quantity"], TV["price"]
    flags, _, after = run(
        detector, upd(s - 1, 10 * p), upd(-2, 10 * p), upd(s - 2, 10 * p), upd(s - 3, 10 * p)
    )
    assert flags == [True, True, True, True]  # the hard flag breaks the run: two more are needed
    assert after.price == p


def test_the_rebase_flag_is_data() -> None:
    rules = RuleSet(DEFAULT_RULES)
    assert {n for k, n in enumerate(rules.names) if rules.rebase_mask >> k & 1} == {
        "price_jump_9x",
        "price_drop_9x",
    }
    assert rules.rebase_fields.tolist() == [0.0, 0.0, 0.0, 1.0]
    assert RuleSet(rules.table()).table() == rules.table()  # bound into a model and read back
    plain = RuleSet([{k: v for k, v in r.items() if k != "rebase"} for r in DEFAULT_RULES])
    assert plain.rebase_mask == 0  # a model trained without it keeps alerting as before


def test_updates_in_the_same_second_are_movement_applied_in_order(detector: ChangeDetector) -> None:
    """A point-of-sale feed stamps to the second: 22, 21, 20 at one time are three sales."""
    p = TV["price"]
    hourly = [upd(30 - k, p, at=f"2026-03-02T{8 + k:02d}:00:00Z") for k in range(4)]
    same = [upd(s, at="2026-03-02T12:00:05Z") for s in (22, 21, 20)]
    flags, fired, after = run(detector, *hourly, *same, upd(19, at="2026-03-02T13:00:00Z"))
    assert flags == [False] * 8, fired
    assert after.stock == 19


def test_a_replay_in_the_same_second_still_alerts(detector: ChangeDetector) -> None:
    p = TV["price"]
    at = "2026-03-02T12:00:05Z"
    flags, fired, after = run(detector, upd(26, p, at=at), upd(25), upd(26, at=at), upd(25, 2 * p, at=at))
    assert flags == [False, False, True, True]
    assert "same_time_revert" in fired[2] and "same_time_other_state" in fired[3]
    assert after.stock == 25 and after.price == p


def test_a_change_of_unit_with_its_levels_settles_and_a_stock_against_old_levels_keeps_alerting(
    detector: ChangeDetector,
) -> None:
    """Counted in units instead of packs of 12: reported with the levels in units it becomes the
    baseline; the stock in units against the levels in packs is bad data for as long as it lasts."""
    s, lo, hi, p = TV["stock_quantity"], TV["min_stock_level"], TV["max_stock_level"], TV["price"]
    units = [
        dict(upd(12 * hi - 5 * k, p), min_stock_level=12 * lo, max_stock_level=12 * hi) for k in range(1, 7)
    ]
    units += [upd(12 * hi - 5 * k) for k in range(7, 10)]
    flags, fired, after = run(detector, *units)
    assert not any("stock_10x_max" in f for f in fired)
    assert flags[-4:] == [False] * 4 and after.max == 12 * hi and after.stock == 12 * hi - 45
    flags, fired, after = run(detector, *(upd(12 * hi - 5 * k) for k in range(1, 9)))
    assert flags == [True] * 8 and all("stock_10x_max" in f for f in fired)
    assert after.stock == s
