"""The one event builder: deterministic anomaly ids, decision and anomaly events of the documented shape."""

from __future__ import annotations

from datetime import UTC, datetime

import jsonschema
import numpy as np
import pytest

from consumer.wire.events import (
    EVENT_SCHEMA_VERSION,
    Coordinates,
    IdBy,
    anomaly_id,
    build_events,
    item_anomaly_id,
)
from detection import FEATURE_NAMES
from tests.fakes import FakeDecisions
from tests.schemas import validate

NOW = datetime(2026, 11, 25, 18, 0, 0, tzinfo=UTC)
VERSION = "20261125T180102Z-1a2b3c4d"


def test_anomaly_id_is_deterministic_and_distinguishes_its_inputs() -> None:
    a = anomaly_id("inventory.stock-updates", 3, 1234, VERSION)
    assert a == anomaly_id("inventory.stock-updates", 3, 1234, VERSION)
    assert len(a) == 32 and int(a, 16) >= 0
    others = {
        anomaly_id("inventory.stock-updates", 4, 1234, VERSION),
        anomaly_id("inventory.stock-updates", 3, 1235, VERSION),
        anomaly_id("inventory.stock-updates", 3, 1234, "20261125T180102Z-00000000"),
        anomaly_id("other", 3, 1234, VERSION),
        anomaly_id("inventory.stock-updates", 31, 234, VERSION),  # no concatenation clash
    }
    assert a not in others and len(others) == 5


def test_item_anomaly_id_depends_on_source_item_and_version_only() -> None:
    a = item_anomaly_id("mongo:db.inventory", "SKU-1", VERSION)
    assert a == item_anomaly_id("mongo:db.inventory", "SKU-1", VERSION)
    others = {
        item_anomaly_id("mongo:db.other", "SKU-1", VERSION),
        item_anomaly_id("mongo:db.inventory", "SKU-2", VERSION),
        item_anomaly_id("mongo:db.inventory", "SKU-1", "20261125T180102Z-00000000"),
    }
    assert a not in others and len(others) == 3


def _batch(stocks: list[float]) -> tuple[FakeDecisions, list[dict[str, object]]]:
    n = len(stocks)
    features = np.column_stack(
        [np.asarray(stocks, dtype=np.float64)] + [np.full(n, 1.0 + k) for k in range(6)]
    )
    scores = np.where(features[:, 0] > 1000, -0.2, 0.1)
    items = [
        {"item_id": f"SKU-{i}", "event_id": f"e{i}" if i % 2 else None, "stock_quantity": s,
         "min_stock_level": 10.0, "max_stock_level": 100.0, "price": 5.0}
        for i, s in enumerate(stocks)
    ]  # fmt: skip
    return FakeDecisions(scores, scores < 0.0, features), items


def _build(
    stocks: list[float], rows: np.ndarray | None = None, **kw: object
) -> list[tuple[int, dict, dict | None]]:
    decisions, items = _batch(stocks)
    kw = {"sources": [Coordinates("file:u.jsonl", 0, 10 + i) for i in range(len(items))]} | kw
    return list(
        build_events(
            decisions,
            np.arange(len(items)) if rows is None else rows,
            item_ids=[str(it["item_id"]) for it in items],
            event_ids=[it["event_id"] for it in items],  # type: ignore[misc]
            item=lambda i: items[i],
            version=VERSION,
            threshold=0.0,
            now=NOW,
            **kw,  # type: ignore[arg-type]
        )
    )


def test_decision_and_anomaly_events_fit_their_schemas() -> None:
    built = _build([50, 5000, 60, 9000])
    assert [i for i, _, _ in built] == [0, 1, 2, 3]
    for i, decision, anomaly in built:
        validate("decision-event", decision)
        validate("score-line", anomaly or decision)
        assert decision["is_anomaly"] == (anomaly is not None) == (i in (1, 3))
        if anomaly is None:
            with pytest.raises(jsonschema.ValidationError):
                validate("anomaly-event", decision)
            continue
        validate("anomaly-event", anomaly)
        # the anomaly event is the decision event plus item, severity, reasons (in that order)
        assert list(anomaly) == [*decision, "item", "severity", "reasons"]
        assert {k: anomaly[k] for k in decision} == decision
        assert (anomaly["item"]["item_id"], anomaly["severity"], anomaly["reasons"]) == (
            f"SKU-{i}", "high", [f"row {i} looks odd"],
        )  # fmt: skip


def test_event_fields_come_from_the_row_its_source_and_the_model() -> None:
    [(_, decision, anomaly)] = _build([50, 5000], rows=np.array([1]))
    assert anomaly is not None
    assert decision == {
        "schema_version": EVENT_SCHEMA_VERSION,
        "anomaly_id": anomaly_id("file:u.jsonl", 0, 11, VERSION),
        "item_id": "SKU-1",
        "event_id": "e1",
        "is_anomaly": True,
        "score": -0.2,
        "threshold": 0.0,
        "model_version": VERSION,
        "features": dict(zip(FEATURE_NAMES, [5000.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], strict=True)),
        "source": {"topic": "file:u.jsonl", "partition": 0, "offset": 11, "timestamp": None},
        "detected_at": "2026-11-25T18:00:00Z",
    }


def test_ids_by_item_ignore_the_row_so_a_rescan_keeps_them() -> None:
    first = _build([5000, 50, 7000], id_by=IdBy.ITEM,
                   sources=[Coordinates("mongo:db.inv", 0, i) for i in range(3)])  # fmt: skip
    shifted = _build([5000, 50, 7000], id_by=IdBy.ITEM,
                     sources=[Coordinates("mongo:db.inv", 0, 100 + i) for i in range(3)])  # fmt: skip
    ids = [a["anomaly_id"] for _, _, a in first if a]
    assert ids == [item_anomaly_id("mongo:db.inv", f"SKU-{i}", VERSION) for i in (0, 2)]
    assert ids == [a["anomaly_id"] for _, _, a in shifted if a]
    for _, _, anomaly in first:
        if anomaly:
            validate("anomaly-event", anomaly)
