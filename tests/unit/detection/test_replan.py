"""A re-plan of the levels within REPLAN_RANGE is normal motion; a tenfold max is still an alert."""

from __future__ import annotations

import math

import pytest

from detection import ChangeDetector, parse_updates, train_detector
from detection.change_features import CHANGE_FEATURE_NAMES
from detection.detector_training import REPLAN_RANGE
from tests.unit.detection.test_detector import batch, snapshot_docs


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs(seed=4))[0])


def test_the_hull_of_the_level_features_covers_the_replan_range(detector: ChangeDetector) -> None:
    meta = detector.metadata
    for name in ("min_step", "max_step"):
        j = CHANGE_FEATURE_NAMES.index(name)
        assert meta.hull_low[j] <= math.log(REPLAN_RANGE[0]) and meta.hull_high[j] >= math.log(
            REPLAN_RANGE[1]
        )


@pytest.mark.parametrize(("factor", "alerts"), [(1.8, False), (0.55, False), (10.0, True)])
def test_a_level_replan(detector: ChangeDetector, factor: float, alerts: bool) -> None:
    table = detector.baseline(parse_updates(snapshot_docs(seed=4))[0])
    state = table.get("sku-0")
    assert state is not None
    update = {"item_id": "sku-0", "min_stock_level": round(state.min * factor),
              "max_stock_level": round(state.max * factor)}  # fmt: skip
    decisions, _ = detector.decide_batch(table, batch(update))
    assert bool(decisions.is_anomaly[0]) is alerts
