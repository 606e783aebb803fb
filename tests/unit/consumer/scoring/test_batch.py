"""The pure batch step: records -> items / dead letters -> one decide call -> output records."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest

from consumer.scoring.batch import BatchConfig, process_batch, validate_records
from consumer.wire.events import anomaly_id
from consumer.wire.schemas import AnomalyEvent, DecisionEvent
from detection import FEATURE_NAMES, parse_item, train_model
from tests.fakes import FakeModel, item, rec
from tests.schemas import validate

NOW = datetime(2026, 11, 25, 18, 0, 0, tzinfo=UTC)
CONFIG = BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq", max_message_bytes=4096)


def test_valid_and_invalid_records_are_separated_in_order() -> None:
    records = [rec(0, item(0)), rec(1, None, raw=b"{oops"), rec(2, item(2)), rec(3, None, raw=b"[1]")]
    batch = validate_records(records, CONFIG)
    assert batch.columns.item_ids == ["SKU-0", "SKU-2"]
    assert [r.offset for r in batch.sources] == [0, 2]
    assert [dict(d.headers)["dlq.source.offset"] for d in batch.dead_letters] == [b"1", b"3"]
    assert batch.dlq_reasons == {"invalid_json": 1, "not_an_object": 1}


def test_one_decide_call_per_batch_and_one_event_per_anomaly() -> None:
    model = FakeModel()
    records = [rec(i, item(i, stock=5000 if i in (3, 7) else 50)) for i in range(10)]
    result = process_batch(records, model, CONFIG, now=NOW)
    assert model.calls == [10]
    assert (result.n_in, result.n_valid, result.n_anomalies) == (10, 10, 2)
    assert [o.topic for o in result.outputs] == ["anomalies", "anomalies"]
    assert [o.key for o in result.outputs] == [b"SKU-3", b"SKU-7"]
    event = orjson.loads(result.outputs[0].value or b"")
    assert event["anomaly_id"] == anomaly_id("in", 0, 3, model.version)
    assert event["source"] == {"topic": "in", "partition": 0, "offset": 3, "timestamp": 1003}
    assert event["features"]["stock_quantity"] == 5000.0
    assert list(event["features"]) == list(FEATURE_NAMES)
    assert (event["score"], event["threshold"], event["model_version"]) == (-0.2, 0.0, model.version)
    assert (event["severity"], event["reasons"]) == ("high", ["row 3 looks odd"])
    assert event["item"]["item_id"] == "SKU-3"
    assert event["detected_at"] == "2026-11-25T18:00:00Z"
    assert result.anomalies[0] == event


def test_built_events_validate_against_the_documented_models() -> None:
    model = FakeModel()
    obj = item(1, stock=5000) | {"event_id": "evt-42"}
    config = BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq", decisions_topic="decisions")
    result = process_batch([rec(0, item(0)), rec(1, obj)], model, config, now=NOW)
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for out in result.outputs:
        by_topic.setdefault(out.topic, []).append(orjson.loads(out.value or b""))
    assert len(by_topic["decisions"]) == 2 and len(by_topic["anomalies"]) == 1
    for decision in by_topic["decisions"]:
        DecisionEvent.model_validate(validate("decision-event", decision))
    anomaly = AnomalyEvent.model_validate(validate("anomaly-event", by_topic["anomalies"][0]))
    assert anomaly.event_id == "evt-42"
    assert anomaly.anomaly_id == by_topic["decisions"][1]["anomaly_id"]


def test_a_batch_of_only_bad_records_scores_nothing() -> None:
    model = FakeModel()
    result = process_batch([rec(0, None, raw=b"x"), rec(1, None, raw=b"")], model, CONFIG, now=NOW)
    assert model.calls == []
    assert result.n_valid == 0 and len(result.outputs) == 2


def test_redelivery_yields_identical_anomaly_ids() -> None:
    records = [rec(i, item(i, stock=9999)) for i in range(3)]
    first = process_batch(records, FakeModel(), CONFIG, now=NOW)
    again = process_batch(records, FakeModel(), CONFIG, now=datetime.now(UTC))
    assert [a["anomaly_id"] for a in first.anomalies] == [a["anomaly_id"] for a in again.anomalies]


@pytest.fixture(scope="module")
def real_model() -> Any:
    rng = random.Random(7)
    items = [
        parse_item(
            {
                "item_id": f"T-{i}",
                "stock_quantity": rng.randint(20, 80),
                "min_stock_level": 10,
                "max_stock_level": 100,
                "price": round(rng.uniform(5, 50), 2),
            }
        )
        for i in range(200)
    ]
    return train_model(items).with_version("20261125T180102Z-deadbeef")


def test_real_model_scores_match_a_direct_decide_call(real_model: Any) -> None:
    objs = [item(i, stock=50 + i) for i in range(20)] + [item(99, stock=50_000)]
    result = process_batch([rec(i, o) for i, o in enumerate(objs)], real_model, CONFIG, now=NOW)
    direct = real_model.decide([parse_item(o) for o in objs])
    expected = {objs[i]["item_id"]: float(direct.scores[i]) for i in np.flatnonzero(direct.is_anomaly)}
    got = {a["item_id"]: a["score"] for a in result.anomalies}
    assert got == expected
    assert "SKU-99" in got


def test_item_field_of_an_anomaly_equals_the_parsed_item(real_model: Any) -> None:
    objs = [
        item(1, stock=90_000),
        {"sku": " S-2 ", "stock_quantity": "70000", "min_stock": 3, "max_stock": 9},
    ]
    result = process_batch([rec(i, o) for i, o in enumerate(objs)], real_model, CONFIG, now=NOW)
    assert len(result.anomalies) == 2
    for anomaly, obj in zip(result.anomalies, objs, strict=True):
        state = {k: v for k, v in anomaly["item"].items() if not k.startswith("attributes")}
        assert state == parse_item(obj).model_dump(mode="json")
        assert anomaly["item"]["attributes"] == {}  # aliases are read by the parser: not attributes


def test_dead_letters_keep_arrival_order_across_decode_and_item_failures() -> None:
    records = [
        rec(0, {"item_id": "A", "price": "NaN"}),
        rec(1, None, raw=b"{oops"),
        rec(2, item(2)),
        rec(3, {"price": 1}),
        rec(4, None, raw=b"[1]"),
        rec(5, {"sku": "S", "price": "2"}),
    ]
    batch = validate_records(records, CONFIG)
    assert batch.columns.item_ids == ["SKU-2", "S"]
    assert [r.offset for r in batch.sources] == [2, 5]
    assert [dict(d.headers)["dlq.source.offset"] for d in batch.dead_letters] == [b"0", b"1", b"3", b"4"]
    assert [dict(d.headers)["dlq.reason"] for d in batch.dead_letters] == [
        b"invalid_item", b"invalid_json", b"invalid_item", b"not_an_object",
    ]  # fmt: skip
