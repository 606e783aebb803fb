"""Analyst labels: what training leaves out, and the gate's labelled-precision rule."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from consumer.retraining.gate import GateResult, check_labelled_precision
from consumer.retraining.labels import Labels, load_labels, training_exclusions
from detection import CHANGE_FEATURE_NAMES


def state(i: int, stock: float = 100) -> dict[str, Any]:
    return {
        "item_id": f"SKU-{i}",
        "stock_quantity": stock,
        "min_stock_level": 10,
        "max_stock_level": 200,
        "price": 5,
    }


class LabelDB:
    def __init__(self, labelled: list[dict[str, Any]], inventory: list[dict[str, Any]]) -> None:
        self._labelled, self._inventory = labelled, inventory
        self.asked: list[str] = []

    def labelled(self) -> list[dict[str, Any]]:
        return self._labelled

    def inventory_items(self, item_ids: Any) -> list[dict[str, Any]]:
        self.asked = list(item_ids)
        return [d for d in self._inventory if d["item_id"] in self.asked]


def test_confirmed_items_are_left_out_and_false_positives_kept_even_when_flagged() -> None:
    labels = Labels(confirmed_ids={"A", "B"}, false_positive_ids={"B", "C", "D"})
    # A confirmed; B both (confirmed wins); C flagged but a false positive; D only a false positive
    assert training_exclusions({"B", "C", "E"}, labels) == {"A", "B", "E"}


def test_labels_take_the_audited_state_else_the_inventory() -> None:
    db = LabelDB(
        [
            {"_id": "e1", "label": "confirmed", "item_id": "SKU-1", "item": state(1, 90_000)},
            {"_id": "e2", "label": "false_positive", "item_id": "SKU-2", "item": None},
            {"_id": "e3", "label": "false_positive", "item_id": "SKU-9"},  # gone from the inventory
            {"_id": "e4", "label": "bogus", "item_id": "SKU-3"},
        ],
        [state(2, 150), state(3)],
    )
    labels = load_labels(db)
    assert db.asked == ["SKU-2", "SKU-9"]
    assert labels.confirmed.tolist() == [True, False]
    assert labels.features.shape == (2, 7) and labels.features[0, 0] == 90_000
    assert labels.missing_state == 1
    assert (labels.confirmed_ids, labels.false_positive_ids) == ({"SKU-1"}, {"SKU-2", "SKU-9"})
    assert labels.summary()["kept_false_positive_items"] == 2


def test_labels_of_default_events_keep_the_change_features_the_model_recorded() -> None:
    change = dict.fromkeys(CHANGE_FEATURE_NAMES, 0.0) | {"stock_step": 2.3}
    db = LabelDB(
        [
            {"_id": "e1", "label": "confirmed", "item_id": "SKU-1", "item": state(1), "features": change},
            {
                "_id": "e2",
                "label": "false_positive",
                "item_id": "SKU-2",
                "item": state(2),
                "features": change,
            },
            {
                "_id": "e3",
                "label": "confirmed",
                "item_id": "SKU-3",
                "item": state(3),
                "features": {"stock_quantity": 1.0},
            },  # a seed event's features: no change row
            {
                "_id": "e4",
                "label": "confirmed",
                "item_id": "SKU-4",
                "item": state(4),
                "features": change | {"price_step": "NaN"},
            },  # unusable: left out
        ],
        [],
    )
    labels = load_labels(db)
    features, confirmed = labels.rows_for("default")
    assert features.shape == (2, len(CHANGE_FEATURE_NAMES)) and confirmed.tolist() == [True, False]
    assert features[0, CHANGE_FEATURE_NAMES.index("stock_step")] == 2.3
    assert labels.rows_for("seed")[0].shape == (4, 7)  # every label still has its item state
    assert labels.summary()["labelled_changes"] == 2


class Model:
    """Flags the rows whose first feature (stock) is above ``cut``."""

    threshold = 0.0

    def __init__(self, cut: float) -> None:
        self.cut = cut

    def score(self, x: Any) -> Any:
        return np.where(np.asarray(x)[:, 0] > self.cut, -1.0, 1.0)

    metadata = None


STOCKS = np.array([[10.0], [20.0], [30.0], [40.0]]).repeat(7, axis=1)
CONFIRMED = np.array([False, False, True, True])  # the high-stock items are real anomalies


@pytest.mark.parametrize(
    ("cand_cut", "cur_cut", "refused"),
    [
        (25, 25, False),  # same precision 1.0
        (15, 25, True),  # candidate also flags a false positive: 2/3 < 1.0
        (35, 15, False),  # candidate flags fewer but all right: 1.0 > 2/3
        (99, 25, True),  # candidate flags none, the current model finds confirmed ones
        (99, 99, False),  # neither flags anything: nothing to compare
    ],
)
def test_a_candidate_with_lower_labelled_precision_is_refused(
    cand_cut: float, cur_cut: float, refused: bool
) -> None:
    result = GateResult()
    check_labelled_precision(Model(cand_cut), Model(cur_cut), STOCKS, CONFIRMED, min_labels=4, result=result)
    assert (not result.passed) is refused
    assert result.checks["labelled"]["labels"] == 4
    assert "candidate" in result.checks["labelled"] and "current" in result.checks["labelled"]


def test_too_few_labels_or_no_current_model_skip_the_rule() -> None:
    for current, min_labels in ((Model(25), 5), (None, 1)):
        result = GateResult()
        check_labelled_precision(Model(15), current, STOCKS, CONFIRMED, min_labels=min_labels, result=result)
        assert result.passed and "skipped" in result.checks["labelled"]
