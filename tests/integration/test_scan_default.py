"""``stockwatch scan`` with a ``default`` model on the shared FerretDB (and the broker for --publish):
each inventory document judged as an item's first known state, with no history."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from consumer.adapters.kafka import StatusTail
from consumer.cli import main
from consumer.stores import store_from_settings
from consumer.wire.events import item_anomaly_id
from detection import ChangeDetector, StateTable, parse_updates, train_detector
from tests.integration.retrain_support import inventory_docs, settings_factory
from tests.schemas import validate, validate_all

pytestmark = pytest.mark.integration
__all__ = ["settings_factory"]  # the fixture, re-exported for pytest


def categorised(n: int, seed: int) -> list[dict[str, Any]]:
    return [doc | {"category": f"cat-{k % 4}"} for k, doc in enumerate(inventory_docs(n, seed))]


def test_scan_of_a_default_model_flags_the_states_no_item_can_have(
    settings_factory: Any, mongo_db: Any, capsys: Any
) -> None:
    settings = settings_factory(detector="default")
    version = store_from_settings(settings).publish(train_detector(parse_updates(categorised(300, 21))[0]))
    docs = categorised(250, 22)  # more than one chunk of retrain_batch_size (100)
    docs[10] |= {"stock_quantity": -3}  # negative_stock
    docs[120] |= {"min_stock_level": 500, "max_stock_level": 400}  # min_ge_max
    docs[230] |= {"stock_quantity": docs[230]["max_stock_level"] * 30}  # 30x its own max level
    docs[40].pop("max_stock_level")  # not a state
    mongo_db["inventory"].insert_many(docs)

    assert main(["scan"]) == 0
    out, err = capsys.readouterr()
    events = validate_all("anomaly-event", (orjson.loads(line) for line in out.splitlines()))
    summary = validate("scan-summary", orjson.loads(err.splitlines()[-1]))
    assert summary == {"scanned": 249, "anomalies": len(events), "invalid": 1, "model_version": version}
    by_item = {e["item_id"]: e for e in events}
    assert (
        "negative_stock" in by_item["sku-22-10"]["rules"] and by_item["sku-22-10"]["kind"] == "data_quality"
    )
    assert "min_ge_max" in by_item["sku-22-120"]["rules"]
    assert "stock_10x_max" in by_item["sku-22-230"]["rules"]  # the rule reads the state's own max level
    assert by_item["sku-22-230"]["kind"] == "data_quality" and by_item["sku-22-230"]["severity_score"] >= 50
    source = f"mongo:{settings.mongo_db}.{settings.mongo_collection}"
    for e in events:
        assert e["model_version"] == version and e["source"]["topic"] == source
        assert e["anomaly_id"] == item_anomaly_id(source, e["item_id"], version)
    # what the served model decides for items it has never seen, each alone
    model = store_from_settings(settings).load_any()
    assert isinstance(model, ChangeDetector)
    valid = [d for k, d in enumerate(docs) if k != 40]
    decisions, _ = model.decide_batch(StateTable(), parse_updates(valid)[0])
    flagged = [d["_id"] for d, anomalous in zip(valid, decisions.is_anomaly, strict=True) if anomalous]
    assert sorted(by_item) == sorted(flagged)

    tail = StatusTail(settings.kafka_bootstrap, settings.anomaly_topic)
    tail.start()
    try:
        assert main(["scan", "--publish"]) == 0
        published: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while len(published) < len(events) and time.monotonic() < deadline:
            published += tail.poll(0.5)
    finally:
        tail.close()
    assert sorted(e["anomaly_id"] for e in published) == sorted(e["anomaly_id"] for e in events)
