"""A missed error that became the baseline does not turn the item's next normal updates into alerts."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from detection import ChangeDetector, parse_updates, train_detector
from detection.decide_reference import decide_batch_reference
from detection.item_state import StateTable
from tests.unit.detection.test_detector import batch, snapshot_docs


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs(seed=4))[0])


def poisoned(detector: ChangeDetector, *, left: float) -> tuple[StateTable, float]:
    """sku-0 (thousands of units) as if a x10 report had been accepted after stock ``s``."""
    table = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    state = table.get("sku-0")
    assert state is not None
    s = state.stock
    table.put("sku-0", dataclasses.replace(state, stock=10 * s, left_stock=s if math.isnan(left) else left))
    return table, s


def test_a_normal_move_from_before_the_missed_error_is_judged_from_there(detector: ChangeDetector) -> None:
    table, s = poisoned(detector, left=float("nan"))  # left_stock = s: the stock before the x10
    twin, _ = poisoned(detector, left=float("nan"))
    sale = {"item_id": "sku-0", "stock_quantity": s - 20}
    decisions, changes = detector.decide_batch(table, batch(sale))
    reference, ref_changes = decide_batch_reference(detector, twin, batch(sale))
    assert not decisions.is_anomaly[0] and decisions.scores[0] > 0
    assert decisions.baseline[0, 0] == s  # judged against the stock before the x10
    np.testing.assert_allclose(decisions.scores, reference.scores, atol=1e-9)
    np.testing.assert_allclose(decisions.features, reference.features, atol=1e-9)
    assert dict(changes.packed()) == dict(ref_changes.packed())
    changes.apply_to(table)
    after = table.get("sku-0")
    assert after is not None and after.stock == s - 20 and after.left_stock == s


def test_without_the_stock_before_it_the_same_update_alerts(detector: ChangeDetector) -> None:
    table, s = poisoned(detector, left=10 * 10.0**9)  # a left stock this update is no normal move from
    decisions, _ = detector.decide_batch(table, batch({"item_id": "sku-0", "stock_quantity": s - 20}))
    assert decisions.is_anomaly[0] and decisions.baseline[0, 0] == 10 * s


def test_a_normal_change_before_it_is_not_rolled_back(detector: ChangeDetector) -> None:
    """After a restock (a normal change) a phantom drop back near the old level still alerts."""
    table = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    state = table.get("sku-0")
    assert state is not None
    low, full = state.min, state.max  # restocked from the min level up to the max level
    table.put("sku-0", dataclasses.replace(state, stock=full, left_stock=low))
    decisions, _ = detector.decide_batch(table, batch({"item_id": "sku-0", "stock_quantity": low - 20}))
    assert decisions.is_anomaly[0] and decisions.baseline[0, 0] == full


def test_a_second_update_that_agrees_with_the_stock_before_the_last_change_rolls_it_back(
    detector: ChangeDetector,
) -> None:
    """A restock-sized rise that was an error (x6 read as a receipt): the first report back near the
    old level alerts, the next one that agrees with it is judged from before the rise, not flagged."""
    table = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    state = table.get("sku-0")
    assert state is not None
    low, full = state.min, state.max
    table.put("sku-0", dataclasses.replace(state, stock=full, left_stock=low))
    first, changes = detector.decide_batch(table, batch({"item_id": "sku-0", "stock_quantity": low - 20}))
    assert first.is_anomaly[0]
    changes.apply_to(table)
    twin = StateTable()
    after_first = table.get("sku-0")
    assert after_first is not None and after_first.flag_run == 1
    twin.put_packed("sku-0", after_first.pack())
    second = {"item_id": "sku-0", "stock_quantity": low - 25}
    decisions, _ = detector.decide_batch(table, batch(second))
    reference, _ = decide_batch_reference(detector, twin, batch(second))
    assert not decisions.is_anomaly[0] and decisions.baseline[0, 0] == low
    np.testing.assert_allclose(decisions.scores, reference.scores, atol=1e-9)


def test_a_second_report_from_before_a_normal_change_rolls_it_back(detector: ChangeDetector) -> None:
    """A missed error that looked like a restock (x12 of a low stock): the first report from the old
    level alerts (it could be a phantom drop), a second one in a row confirms it and does not."""
    table = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    twin = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    state = table.get("sku-0")
    assert state is not None
    low, full = state.min, state.max
    for t in (table, twin):
        t.put("sku-0", dataclasses.replace(state, stock=full, left_stock=low))
    updates = batch(*({"item_id": "sku-0", "stock_quantity": low - k} for k in (20, 40, 60)))
    decisions, changes = detector.decide_batch(table, updates)
    reference, ref_changes = decide_batch_reference(detector, twin, updates)
    assert decisions.is_anomaly.tolist() == [True, False, False] == reference.is_anomaly.tolist()
    assert decisions.baseline[1, 0] == low  # judged from the stock before the rolled-back change
    np.testing.assert_allclose(decisions.scores, reference.scores, atol=1e-9)
    assert dict(changes.packed()) == dict(ref_changes.packed())
    changes.apply_to(table)
    after = table.get("sku-0")
    assert after is not None and after.stock == low - 60 and after.flag_run == 0


def test_a_return_to_exactly_the_stock_before_is_no_confirmation(detector: ChangeDetector) -> None:
    """After a restock and a flagged price error, a drop back to exactly the old stock (how a replay
    or a phantom drop looks) still alerts: only a move on from that stock confirms it."""
    table = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    twin = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    state = table.get("sku-0")
    assert state is not None
    low, full = state.min, state.max
    for t in (table, twin):
        t.put("sku-0", dataclasses.replace(state, stock=full, left_stock=low))
    updates = batch(
        {"item_id": "sku-0", "stock_quantity": full - 20, "price": 100 * state.price},
        {"item_id": "sku-0", "stock_quantity": low, "price": state.price},
    )
    decisions, _ = detector.decide_batch(table, updates)
    reference, _ = decide_batch_reference(detector, twin, updates)
    assert decisions.is_anomaly.tolist() == [True, True] == reference.is_anomaly.tolist()
    assert decisions.kind(0) == "data_quality" and decisions.baseline[1, 0] == full


def test_a_rise_past_the_max_level_is_rolled_back_on_the_first_report(detector: ChangeDetector) -> None:
    """Orders fill up to the max level: a "receipt" that left the stock above it explains nothing, so
    the first report from the old level that contradicts it is judged from before it (a rise to
    the max itself still needs a second report: see above)."""
    table = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    twin = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    state = table.get("sku-0")
    assert state is not None
    low, over = state.min, round(state.max * 1.05)  # a x6 of a low stock read as a receipt, past the max
    for t in (table, twin):
        t.put("sku-0", dataclasses.replace(state, stock=over, left_stock=low))
    sale = batch({"item_id": "sku-0", "stock_quantity": low - 20})
    decisions, changes = detector.decide_batch(table, sale)
    reference, ref_changes = decide_batch_reference(detector, twin, sale)
    assert not decisions.is_anomaly[0] and decisions.baseline[0, 0] == low
    np.testing.assert_allclose(decisions.scores, reference.scores, atol=1e-9)
    assert dict(changes.packed()) == dict(ref_changes.packed())


def test_a_change_a_strong_hint_came_with_is_rolled_back_on_the_first_report(
    detector: ChangeDetector,
) -> None:
    """On a feed whose full states repeat its deltas, a full state that moves the stock (an old state
    re-sent without a time) is accepted with its hint; the first report that contradicts it and is
    a normal move from the stock before it is judged from there (no second report needed)."""
    table = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    twin = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    state = table.get("sku-0")
    assert state is not None
    low, high = state.min, state.max
    for t in (table, twin):
        t.put("sku-0", dataclasses.replace(state, stock=low))
    full = {"item_id": "sku-0", "stock_quantity": low, "min_stock_level": state.min,
            "max_stock_level": state.max, "price": state.price}  # fmt: skip
    updates = batch(full, {**full, "stock_quantity": high}, {"item_id": "sku-0", "stock_quantity": low - 20})
    decisions, changes = detector.decide_batch(table, updates)
    reference, ref_changes = decide_batch_reference(detector, twin, updates)
    assert decisions.rules_fired(0) == ()  # a repeat: this item's feed re-sends full states
    assert decisions.rules_fired(1) == ("full_state_moves_stock",) and not decisions.is_anomaly[1]
    assert not decisions.is_anomaly[2] and decisions.baseline[2, 0] == low  # judged from before the rise
    assert reference.is_anomaly.tolist() == decisions.is_anomaly.tolist()
    np.testing.assert_allclose(decisions.scores, reference.scores, atol=1e-9)
    assert dict(changes.packed()) == dict(ref_changes.packed())
