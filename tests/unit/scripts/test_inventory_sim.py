"""The simulator's shape knobs do what they say (the evaluation data must vary as claimed)."""

from __future__ import annotations

from scripts.inventory_errors import MORE_ERROR_MIX, _transposed
from scripts.inventory_sim import SimConfig, simulate


def test_tiny_items_and_no_category() -> None:
    snapshot, events, _ = simulate(SimConfig(seed=7, n_items=60, days=5, tiny_share=1.0, no_category=True))
    assert all(doc["max_stock_level"] <= 8 for doc in snapshot)
    assert not any("category" in doc for doc in [*snapshot, *events])


def test_more_errors_adds_the_new_kinds_and_their_reports_differ_from_the_truth() -> None:
    _, events, labels = simulate(SimConfig(seed=8, n_items=300, days=10, error_rate=0.05, more_errors=True))
    assert set(labels.values()) & set(MORE_ERROR_MIX)
    by_id = {e["event_id"]: e for e in events}
    for event_id, kind in labels.items():
        if kind == "levels_swapped":
            assert by_id[event_id]["min_stock_level"] > by_id[event_id]["max_stock_level"]


def test_a_transposition_is_only_used_when_far_off() -> None:
    assert _transposed(15) == 51 and _transposed(91) == 19 and _transposed(190) == 910
    assert _transposed(13) is None  # 31 is under 3x off: a sale or a restock could do it
    assert _transposed(5) is None and _transposed(101) is None and _transposed(11) is None


def test_bulk_items_sell_by_the_case() -> None:
    snapshot, events, _ = simulate(SimConfig(seed=9, n_items=40, days=5, bulk_share=1.0, full_rate=0.0,
                                             error_rate=0.0, restock_policy="fixed_qty"))  # fmt: skip
    last = {doc["item_id"]: doc["stock_quantity"] for doc in snapshot}
    drops = []
    for e in events:
        if "stock_quantity" in e and e["item_id"] in last:
            step = last[e["item_id"]] - e["stock_quantity"]
            last[e["item_id"]] = e["stock_quantity"]
            if step > 0 and e["stock_quantity"] > 0:  # a whole sale (not one cut short at 0)
                drops.append(step)
    assert drops and all(d % 6 == 0 for d in drops)


def test_every_flag_says_what_it_does() -> None:
    from dataclasses import fields

    from scripts.inventory_sim import build_parser

    actions = {a.dest: a for a in build_parser()._actions if a.dest != "help"}
    assert set(actions) == {"out"} | {f.name for f in fields(SimConfig) if f.name != "error_mix"}
    for dest, action in actions.items():
        assert action.help and len(action.help) > 15, dest
        if action.default not in (None, False):
            assert f"(default: {action.default})" in action.help, dest
    build_parser().format_help()  # every help text survives argparse's %-formatting
