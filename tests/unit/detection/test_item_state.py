"""Per-item state records: small, packable, restorable; the table gathers and scatters in bulk."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detection import STATE_SIZE, ItemState, StateTable
from detection.item_state import group_code


def state(**overrides: float) -> ItemState:
    values = {"stock": 120.0, "min": 20.0, "max": 200.0, "price": 9.99, "ref_price": 9.99,
              "usual_drop": 4.0, "usual_rise": 150.0, "usual_level": 110.0}  # fmt: skip
    values.update(overrides)
    return ItemState(**values)  # type: ignore[arg-type]


def test_a_state_packs_to_80_bytes_and_back() -> None:
    s = state(n_updates=7, flag_run=2, group=group_code("fasteners"), last_time=1.7e9)
    data = s.pack()
    assert len(data) == STATE_SIZE == 80
    again = ItemState.unpack(data)
    assert again.stock == s.stock and again.n_updates == 7 and again.flag_run == 2
    assert again.last_time == 1.7e9 and again.group == group_code("fasteners")
    assert math.isclose(again.price, 9.99) and math.isclose(again.ref_price, 9.99, rel_tol=1e-6)


def test_unpack_refuses_a_record_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="80 bytes"):
        ItemState.unpack(b"\x00" * 79)


def test_table_restores_from_packed_records_and_grows() -> None:
    table = StateTable(capacity=2)
    for i in range(50):
        table.put(f"sku-{i}", state(stock=float(i)))
    assert len(table) == 50 and "sku-49" in table and "nope" not in table
    copy = StateTable()
    for item_id, data in table.items_packed():
        copy.put_packed(item_id, data)
    rows = copy.lookup(["sku-3", "nope", "sku-49"])
    assert rows[1] == -1
    assert copy.gather(rows[[0, 2]])["stock"].tolist() == [3.0, 49.0]
    assert copy.pack("sku-10") == table.pack("sku-10")


def test_group_codes_are_stable_and_zero_means_none() -> None:
    assert group_code(None) == 0 and group_code("") == 0
    assert group_code("tv") == group_code("tv") != group_code("tvs")
    assert np.uint32(group_code("x")) == group_code("x")
