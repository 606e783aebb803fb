"""possible(): item records StockWatch writes pass, records it never writes (NaN, inf, nonsense) do not."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.scoring.state.record import ITEM_DTYPE, join
from consumer.scoring.state.validity import possible
from detection import ChangeDetector, parse_updates, train_detector
from detection.item_state import STATE_DTYPE
from detection.items import EARLIEST_TIME, LATEST_TIME, MAX_MAGNITUDE
from tests.unit.detection.test_detector import snapshot_docs


def legit(n: int = 1) -> np.ndarray:
    """Item records as a first accepted update leaves them (no time given, no episode)."""
    out = np.zeros(n, ITEM_DTYPE)
    out["stock"], out["min"], out["max"], out["price"] = 40.0, 10.0, 90.0, 9.5
    out["ref_price"], out["usual_drop"], out["usual_rise"], out["usual_level"] = 9.5, 4.5, 56.0, 40.0
    out["last_time"] = out["left_stock"] = np.nan
    return out


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs())[0])


def test_records_the_detector_writes_are_possible_even_at_the_limits_of_its_inputs(
    detector: ChangeDetector,
) -> None:
    rng = np.random.default_rng(7)
    edges = [0.0, -MAX_MAGNITUDE, MAX_MAGNITUDE, 1e-9, -3.0, 1.0, 250.0]
    docs = []
    for k in range(3000):
        doc = {"item_id": f"i{k % 60}"}
        for key in ("stock_quantity", "min_stock_level", "max_stock_level", "price"):
            if k < 60 or rng.random() < 0.6:  # the first update of an item is complete
                doc[key] = float(rng.choice(edges)) * (1.0 if rng.random() < 0.8 else rng.random())
        if rng.random() < 0.5:
            doc["occurred_at"] = float(rng.choice([EARLIEST_TIME, LATEST_TIME, 1.7e9 + k]))
        docs.append(doc)
    batch, errors = parse_updates(docs)
    assert not errors
    uniq = sorted(set(batch.item_ids))
    u = np.array([uniq.index(i) for i in batch.item_ids], np.intp)
    local = np.zeros(len(uniq), STATE_DTYPE)
    known = np.zeros(len(uniq), bool)
    detector.decide_local(batch, u, local, known)
    assert known.all()
    records = join(local)
    assert possible(records).all()
    # the time-less items keep NaN: a legitimate value, not a dropped one
    assert np.isnan(records["last_time"]).any() or np.isnan(records["left_stock"]).any()


def test_nan_in_last_time_and_left_stock_and_an_open_episode_are_kept() -> None:
    records = legit(3)
    records[1]["last_time"], records[1]["left_stock"] = 1.7e9, 35.0
    records[2]["status"], records[2]["max_level"], records[2]["first_seen"] = 1, 3, LATEST_TIME
    records[2]["last_seen_s"] = records[2]["notified_s"] = 3600.0
    assert possible(records).tolist() == [True, True, True]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stock", np.nan), ("min", np.inf), ("max", -np.inf), ("price", np.nan), ("stock", 2e12),
        ("ref_price", np.nan), ("ref_price", 0.0), ("ref_price", -1.0), ("usual_drop", np.inf),
        ("usual_drop", -1.0), ("usual_rise", np.nan), ("usual_level", np.inf), ("usual_gap", np.nan),
        ("usual_gap", -5.0), ("last_time", np.inf), ("last_time", -np.inf), ("left_stock", np.inf),
        ("left_stock", -2e12), ("first_seen", np.nan), ("first_seen", LATEST_TIME + 1),
        ("last_seen_s", np.nan), ("last_seen_s", -1.0), ("notified_s", np.inf), ("status", 3),
        ("max_level", 4),
    ],
)  # fmt: skip
def test_a_forged_number_makes_the_record_impossible(field: str, value: float) -> None:
    records = legit(3)
    records[1][field] = value
    assert possible(records).tolist() == [True, False, True]


def test_records_across_chunks_are_judged_each_and_in_place() -> None:
    records = legit(40_000)  # more than one chunk of the check
    bad = [0, 16_383, 16_384, 39_999]
    records["price"][bad] = np.nan
    ok = possible(records)
    assert np.flatnonzero(~ok).tolist() == bad and possible(records[:0]).shape == (0,)
