"""A new item's flagged first state is provisional: the next states that look right replace it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detection import ChangeDetector, StateTable, parse_updates, train_detector
from detection.decide_reference import decide_batch_reference
from detection.item_state import COUNT_MASK, LAST_FULL, PROVISIONAL, STATE_SIZE, ItemState, is_provisional
from tests.unit.detection.test_detector import batch, snapshot_docs


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs(seed=5))[0])


def fresh_table(detector: ChangeDetector) -> StateTable:
    return detector.baseline(parse_updates(snapshot_docs(seed=5))[0])


def tv(stock: int, price: float | None = None, item_id: str = "new-tv") -> dict[str, Any]:
    """An update of a TV first seen on the stream (peers: TVs at 300-700)."""
    msg: dict[str, Any] = {"item_id": item_id, "category": "tv", "stock_quantity": stock}
    if price is not None:
        msg.update(min_stock_level=6, max_stock_level=30, price=price)
    return msg


def run(detector: ChangeDetector, *messages: dict[str, Any]) -> tuple[np.ndarray, StateTable]:
    """Decide the messages one batch each (kernel), holding the numpy reference to the same results."""
    table, twin = fresh_table(detector), fresh_table(detector)
    flags = []
    for msg in messages:
        d, c = detector.decide_batch(table, batch(msg))
        r, rc = decide_batch_reference(detector, twin, batch(msg))
        np.testing.assert_allclose(d.scores, r.scores, atol=1e-9)
        np.testing.assert_array_equal(d.is_anomaly, r.is_anomaly)
        np.testing.assert_array_equal(d.rule_bits, r.rule_bits)
        np.testing.assert_array_equal(d.baseline, r.baseline)
        assert dict(c.packed()) == dict(rc.packed())
        c.apply_to(table)
        rc.apply_to(twin)
        flags.append(bool(d.is_anomaly[0]))
    return np.array(flags), table


def state(table: StateTable, item_id: str = "new-tv") -> ItemState:
    s = table.get(item_id)
    assert s is not None
    return s


def test_a_new_item_first_seen_at_x100_price_does_not_turn_its_correct_prices_into_alerts(
    detector: ChangeDetector,
) -> None:
    wrong = tv(20, 49_900.0)
    flags, table = run(detector, wrong, tv(19, 499.0), tv(18, 499.0), tv(17), tv(15, 499.0))
    assert flags.tolist() == [True, False, False, False, False]
    after = state(table)
    assert after.price == 499.0 and after.stock == 15
    assert after.ref_price == pytest.approx(499.0)  # the x100 price left no regular price behind
    assert after.n_updates & PROVISIONAL == 0


def test_in_one_batch_too(detector: ChangeDetector) -> None:
    table, twin = fresh_table(detector), fresh_table(detector)
    b = batch(tv(20, 49_900.0), tv(19, 499.0), tv(18), tv(17, 499.0))
    d, c = detector.decide_batch(table, b)
    r, rc = decide_batch_reference(detector, twin, b)
    assert d.is_anomaly.tolist() == [True, False, False, False] == r.is_anomaly.tolist()
    assert dict(c.packed()) == dict(rc.packed())


def test_partial_updates_do_not_confirm_a_provisional_state(detector: ChangeDetector) -> None:
    """A stock-only update inherits the x100 price: it is no evidence for it, so the state stays provisional."""
    flags, table = run(detector, tv(20, 49_900.0), tv(19), tv(18))
    assert flags[0] and state(table).n_updates & PROVISIONAL
    flags, table = run(detector, tv(20, 49_900.0), tv(19), tv(17, 499.0), tv(16, 499.0), tv(15))
    assert flags[2:].tolist() == [False, False, False]
    assert state(table).price == 499.0 and not state(table).n_updates & PROVISIONAL


def test_a_new_item_with_a_normal_first_state_is_judged_against_it_as_before(
    detector: ChangeDetector,
) -> None:
    flags, table = run(detector, tv(20, 499.0), tv(19, 499.0), tv(18, 49_900.0), tv(17, 499.0))
    assert flags.tolist() == [False, False, True, False]  # the x100 price alerts, the baseline keeps 499
    after = state(table)
    assert after.n_updates & COUNT_MASK == 3 and after.price == 499.0 and after.stock == 17


def test_an_item_unlike_its_peers_is_its_own_baseline_after_the_rebaseline_run(
    detector: ChangeDetector,
) -> None:
    """A TV that really costs 45,000: its complete states agree, so the rebaseline confirms the first one."""
    states = [tv(20 - k, 45_000.0) for k in range(4)]  # flagged by peers: the 4th is the 3rd flag in a run
    flags, table = run(detector, *states, tv(15, 450.0))
    assert flags[4]  # a x100 drop from the confirmed price alerts
    assert state(table).price == 45_000.0 and not state(table).n_updates & PROVISIONAL


def test_the_flag_lives_in_a_spare_bit_of_the_80_byte_record(detector: ChangeDetector) -> None:
    _, table = run(detector, tv(20, 49_900.0))
    data = table.pack("new-tv")
    assert data is not None and len(data) == STATE_SIZE == 80
    rows = np.frombuffer(data, table.gather(np.zeros(0, np.intp)).dtype)
    assert is_provisional(rows).tolist() == [True]
    assert ItemState.unpack(data).n_updates == PROVISIONAL | LAST_FULL | 1  # a full first state
    assert not is_provisional(np.frombuffer(fresh_table(detector).pack("sku-1") or b"", rows.dtype)).any()


def test_a_rebaseline_of_a_trusted_item_keeps_its_regular_price(detector: ChangeDetector) -> None:
    """A cut accepted after the rebaseline run may be temporary: the return to the regular price is no jump."""
    table = fresh_table(detector)
    before = state(table, "sku-1")  # a TV of the snapshot
    cut = before.price / 6
    msgs = [{"item_id": "sku-1", "price": cut} for _ in range(3)]
    decisions, changes = detector.decide_batch(table, batch(*msgs))
    assert decisions.is_anomaly.tolist() == [True, True, True]
    assert decisions.rule_bits.tolist() == [0, 0, 0]  # model-only flags: the third rebaselines
    changes.apply_to(table)
    after = state(table, "sku-1")
    assert after.price == cut and after.ref_price == pytest.approx(0.99 * before.ref_price, rel=1e-6)
