"""The default detector: changes judged against the item's own history, rules, state, batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detection import (
    CHANGE_FEATURE_NAMES,
    ChangeDetector,
    StateTable,
    UpdateBatch,
    parse_updates,
    train_detector,
)


def snapshot_docs(n: int = 300, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        big = i % 2 == 0  # fasteners (thousands of units at cents) beside TVs (tens at hundreds)
        hi = int(rng.integers(5000, 12000)) if big else int(rng.integers(15, 40))
        docs.append({"item_id": f"sku-{i}", "category": "fasteners" if big else "tv",
                     "stock_quantity": int(rng.integers(hi // 4, hi)), "min_stock_level": hi // 5,
                     "max_stock_level": hi, "price": round(float(rng.uniform(0.03, 0.08) if big else rng.uniform(300, 700)), 2)})  # fmt: skip
    return docs


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return snapshot_docs()


@pytest.fixture(scope="module")
def detector(docs: list[dict[str, Any]]) -> ChangeDetector:
    return train_detector(parse_updates(docs)[0])


def batch(*messages: dict[str, Any]) -> UpdateBatch:
    b, rejects = parse_updates(messages)
    assert not rejects
    return b


def decide(detector: ChangeDetector, table: StateTable, *messages: dict[str, Any]) -> Any:
    decisions, changes = detector.decide_batch(table, batch(*messages))
    changes.apply_to(table)
    return decisions


def test_metadata_names_the_detector_and_holds_plain_json(detector: ChangeDetector) -> None:
    meta = detector.metadata
    assert meta.detector == "default" and tuple(meta.feature_names) == CHANGE_FEATURE_NAMES
    assert set(meta.peer_groups) == {"fasteners", "tv"}
    assert {r["name"] for r in meta.rules} >= {"negative_stock", "min_ge_max"}
    assert meta.model_validate_json(meta.model_dump_json()) == meta


def test_normal_sales_pass_and_a_case_pack_error_is_flagged_with_history_reasons(
    detector: ChangeDetector, docs: list[dict[str, Any]]
) -> None:
    table = detector.baseline(parse_updates(docs)[0])
    doc = docs[1]  # a TV
    stock = doc["stock_quantity"]
    normal = decide(detector, table, {"item_id": "sku-1", "stock_quantity": stock - 1})
    assert not normal.is_anomaly[0] and normal.kind(0) == "none" and normal.reasons(0) == ()
    wrong = decide(detector, table, {"item_id": "sku-1", "stock_quantity": (stock - 1) * 12})
    assert wrong.is_anomaly[0] and wrong.scores[0] < 0 and wrong.severity_score[0] >= 50
    assert any("max level" in r for r in wrong.reasons(0))
    # the flagged update did not become the baseline: the next normal sale is not a jump back
    after = decide(detector, table, {"item_id": "sku-1", "stock_quantity": stock - 2})
    assert not after.is_anomaly[0]


def test_rules_make_a_data_quality_anomaly_whatever_the_model_says(
    detector: ChangeDetector, docs: list[dict[str, Any]]
) -> None:
    table = detector.baseline(parse_updates(docs)[0])
    d = decide(detector, table, {"item_id": "sku-2", "stock_quantity": -3},
               {"item_id": "sku-4", "min_stock_level": 99999})  # fmt: skip
    assert d.kind(0) == d.kind(1) == "data_quality"
    assert d.rules_fired(0) == ("negative_stock",) and "min_ge_max" in d.rules_fired(1)
    assert d.level(0) in ("high", "critical") and d.reasons(0)[0].startswith("negative_stock")


def test_unknown_partial_item_is_a_missing_field_reject(detector: ChangeDetector) -> None:
    table = StateTable()
    d, changes = detector.decide_batch(table, batch({"item_id": "new", "stock_quantity": 5}))
    assert d.kind(0) == "missing_field" and d.rejected[0].kind == "missing_field"
    assert "price" in d.rejected[0].fields and not changes.item_ids
    full = {"item_id": "new", "stock_quantity": 5, "min_stock_level": 2, "max_stock_level": 10, "price": 3.0}
    d, changes = detector.decide_batch(table, batch(full))
    assert not d.rejected and changes.item_ids == ["new"]


def test_several_updates_of_one_item_in_a_batch_apply_in_order(
    detector: ChangeDetector, docs: list[dict[str, Any]]
) -> None:
    snap = parse_updates(docs)[0]
    stock = docs[3]["stock_quantity"]
    msgs = [{"item_id": "sku-3", "stock_quantity": stock - k} for k in (1, 2, 3)]
    msgs.insert(1, {"item_id": "sku-5", "stock_quantity": docs[5]["stock_quantity"] - 1})
    one_by_one = detector.baseline(snap)
    singles = [decide(detector, one_by_one, m) for m in msgs]
    together = detector.baseline(snap)
    d = decide(detector, together, *msgs)
    np.testing.assert_array_equal(d.scores, [s.scores[0] for s in singles])
    assert together.pack("sku-3") == one_by_one.pack("sku-3")
    assert together.get("sku-3").stock == stock - 3  # type: ignore[union-attr]


def test_stale_and_duplicate_updates_are_caught_by_time(
    detector: ChangeDetector, docs: list[dict[str, Any]]
) -> None:
    table = detector.baseline(parse_updates(docs)[0])
    s = docs[7]["stock_quantity"]
    decide(
        detector, table, {"item_id": "sku-7", "stock_quantity": s - 1, "occurred_at": "2026-03-02T10:00:00Z"}
    )
    d = decide(detector, table, {"item_id": "sku-7", "stock_quantity": s - 1, "occurred_at": "2026-03-02T10:00:00Z"},
               {"item_id": "sku-9", "stock_quantity": 1, "occurred_at": 0.0})  # fmt: skip
    assert d.rules_fired(0) == ("duplicate_update", "unchanged_update")  # the hint says it changes nothing
    decide(
        detector, table, {"item_id": "sku-9", "stock_quantity": docs[9]["stock_quantity"], "occurred_at": 1e9}
    )
    late = decide(detector, table, {"item_id": "sku-9", "stock_quantity": 1, "occurred_at": 1e9 - 86400})
    assert "stale_update" in late.rules_fired(0)


def test_repeats_are_hints_unless_the_items_full_states_repeat_it(
    detector: ChangeDetector, docs: list[dict[str, Any]]
) -> None:
    """A feed re-sending an item's full state (a nightly sync) repeats it routinely: after a full
    state that repeated the item, a repeat ranks as an ordinary update and a full state that moves
    the stock is the hint; a full state that changes the item (full change events) ends that. A
    redelivery carries the fields of the message it repeats, so a full state repeating the item
    after a delta (or the snapshot) is no redelivery; one after a full state is."""
    table = detector.baseline(parse_updates(docs)[0])
    full = {
        k: docs[4][k] for k in ("item_id", "stock_quantity", "min_stock_level", "max_stock_level", "price")
    }
    stock = full["stock_quantity"]
    first = decide(detector, table, full)
    decide(detector, table, {"item_id": "sku-4", "stock_quantity": stock - 1})
    again = decide(detector, table, {**full, "stock_quantity": stock - 1},
                   {"item_id": "sku-6", "stock_quantity": docs[6]["stock_quantity"]})  # fmt: skip
    assert first.rules_fired(0) == ()  # a full state after the snapshot: a sync, not a redelivery
    assert again.rules_fired(0) == ()
    assert again.rules_fired(1) == ("unchanged_update",)  # another item, a stock-only repeat
    moved = decide(detector, table, {**full, "stock_quantity": stock - 2})
    assert moved.rules_fired(0) == ("full_state_moves_stock",) and not moved.is_anomaly[0]
    after = decide(detector, table, {**full, "stock_quantity": stock - 3})
    assert after.rules_fired(0) == ()  # the last full state changed the item: full change events
    resent = decide(detector, table, {**full, "stock_quantity": stock - 3})
    assert resent.rules_fired(0) == ("unchanged_update",)  # that full change event delivered again
    assert again.severity_score[0] < resent.severity_score[0]


def test_a_full_state_after_a_flagged_delta_is_its_correction(
    detector: ChangeDetector, docs: list[dict[str, Any]]
) -> None:
    """A flagged delta is not taken, so the feed's next full state brings the motion it hid: no
    ``full_state_moves_stock`` hint there, and the item's full states still count as repeating."""
    table = detector.baseline(parse_updates(docs)[0])
    full = {
        k: docs[5][k] for k in ("item_id", "stock_quantity", "min_stock_level", "max_stock_level", "price")
    }
    stock = full["stock_quantity"]
    decide(detector, table, full)
    decide(detector, table, full)  # a repeat: this item's full states repeat its deltas
    wrong = decide(detector, table, {"item_id": "sku-5", "stock_quantity": (stock - 1) * 12})
    assert wrong.is_anomaly[0]  # a sale reported in eaches where packs were meant: not taken
    fixed = decide(detector, table, {**full, "stock_quantity": stock - 1})
    assert fixed.rules_fired(0) == () and not fixed.is_anomaly[0]
    again = decide(detector, table, {**full, "stock_quantity": stock - 1})
    assert again.rules_fired(0) == ()  # still a feed of repeating full states: no unchanged_update
    moved = decide(detector, table, {**full, "stock_quantity": stock - 2})
    assert moved.rules_fired(0) == ("full_state_moves_stock",)


def test_the_alert_rate_on_normal_motion_is_near_the_budget(detector: ChangeDetector) -> None:
    meta = detector.metadata
    assert meta.training_scores.anomaly_rate == pytest.approx(meta.alert_budget_per_1000 / 1000, abs=1e-3)


def test_decide_batch_does_not_modify_the_table(detector: ChangeDetector, docs: list[dict[str, Any]]) -> None:
    table = detector.baseline(parse_updates(docs)[0])
    before = table.pack("sku-1")
    detector.decide_batch(table, batch({"item_id": "sku-1", "stock_quantity": 1}))
    assert table.pack("sku-1") == before
