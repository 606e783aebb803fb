"""Customer returns (small rises) do not teach an item's usual rise: that is its receipts' size."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from detection import ChangeDetector, parse_updates, train_detector
from detection.change_features import Merged, advance, initial_states
from detection.decide_reference import decide_batch_reference
from tests.unit.detection.test_detector import batch, snapshot_docs


def one_item(stock: float, *, usual_drop: float, usual_rise: float) -> np.ndarray:
    nan = np.full(1, np.nan)
    rows = initial_states(Merged(np.array([stock]), np.array([200.0]), np.array([1000.0]), np.array([1.0]),
                                 nan, np.zeros(1, np.uint32)))  # fmt: skip
    rows["usual_drop"], rows["usual_rise"], rows["n_updates"] = usual_drop, usual_rise, 50
    return rows


def moved_to(rows: np.ndarray, stock: float) -> np.ndarray:
    m = Merged(np.array([stock]), rows["min"].copy(), rows["max"].copy(), rows["price"].copy(),
               np.full(1, np.nan), rows["group"].copy())  # fmt: skip
    return advance(rows, m, np.ones(1, bool))


@pytest.mark.parametrize("rise", [1.0, 20.0, 60.0])  # up to 3 usual drops of 20, under half of 800
def test_a_return_sized_rise_leaves_the_usual_rise(rise: float) -> None:
    rows = one_item(100.0, usual_drop=20.0, usual_rise=800.0)
    after = moved_to(rows, 100.0 + rise)
    assert after["usual_rise"][0] == pytest.approx(800.0)
    assert after["stock"][0] == 100.0 + rise and after["left_stock"][0] == 100.0  # still accepted


@pytest.mark.parametrize("rise", [61.0, 400.0, 800.0, 2000.0])  # beyond 3 usual drops: supply
def test_a_receipt_teaches_the_usual_rise(rise: float) -> None:
    rows = one_item(100.0, usual_drop=20.0, usual_rise=800.0)
    after = moved_to(rows, 100.0 + rise)
    assert after["usual_rise"][0] == pytest.approx(800.0 + 0.1 * (rise - 800.0))


def test_a_small_receipt_of_an_item_sold_in_ones_still_counts() -> None:
    """Half a usual rise is a receipt even when it is a few units (an item stocked in ones)."""
    rows = one_item(1.0, usual_drop=1.0, usual_rise=4.0)
    assert moved_to(rows, 3.0)["usual_rise"][0] == pytest.approx(4.0 + 0.1 * (2.0 - 4.0))


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs(seed=4))[0])


def test_a_restock_after_many_returns_is_not_an_alert(detector: ChangeDetector) -> None:
    """Sales with returns, a stock-out, then the item's usual receipt: read as normal, by the kernel
    and the reference alike (before, each return pulled the usual rise toward a return's size)."""
    table = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    twin = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    state = table.get("sku-0")
    assert state is not None
    lo, hi = state.min, state.max
    sale = round(0.03 * hi)
    start = dataclasses.replace(state, stock=hi, usual_drop=sale, usual_rise=hi - lo, n_updates=40)
    table.put("sku-0", start)
    twin.put("sku-0", start)
    stocks, s = [], hi
    while s > 2 * sale:  # sell down, every third sale partly returned
        s -= sale
        stocks.append(s)
        if len(stocks) % 3 == 0:
            s += sale // 3
            stocks.append(s)
    stocks += [0.0, hi - lo, hi - lo - sale]  # stock-out, the usual receipt, the next sale
    updates = batch(*({"item_id": "sku-0", "stock_quantity": v} for v in stocks))
    decisions, changes = detector.decide_batch(table, updates)
    reference, ref_changes = decide_batch_reference(detector, twin, updates)
    assert not decisions.is_anomaly.any(), [decisions.reasons(int(i)) for i in decisions.anomaly_indices]
    np.testing.assert_array_equal(decisions.is_anomaly, reference.is_anomaly)
    assert dict(changes.packed()) == dict(ref_changes.packed())
    changes.apply_to(table)
    after = table.get("sku-0")
    assert after is not None and after.usual_rise > 0.9 * (hi - lo)  # the receipt, not the returns
