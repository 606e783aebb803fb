"""``stockwatch scan`` of a ``default`` model: each inventory document judged as an item's first state."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from consumer.cli.scan_changes import inventory_fields, scan_changes
from consumer.retraining.snapshot import DocCounts
from consumer.wire.events import item_anomaly_id
from detection import ChangeDetector, StateTable, parse_updates, train_detector
from tests.schemas import validate_all

SOURCE = "mongo:db.inventory"


def inventory(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        hi = rng.randint(60, 300)
        docs.append({"_id": f"sku-{seed}-{i}", "category": f"cat-{i % 3}", "min_stock_level": hi // 5,
                     "stock_quantity": rng.randint(hi // 4, hi), "max_stock_level": hi,
                     "price": round(rng.uniform(5, 50), 2)})  # fmt: skip
    return docs


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(inventory(400, 1))[0])


def test_state_rules_flag_and_clean_documents_pass(detector: ChangeDetector) -> None:
    docs = inventory(120, 2)
    docs[3] |= {"stock_quantity": -4}
    docs[7] |= {"min_stock_level": 90, "max_stock_level": 80}
    docs[5] |= {"price": 2000.0}  # ~70x its peers' prices: the model's call
    docs[9].pop("price")  # not a state: invalid, counted
    counts = DocCounts(read=500)
    scored, events = scan_changes(detector, docs, SOURCE, 500, counts)
    assert (scored, counts.read, counts.invalid) == (119, 620, 1) and "sku-2-9" in counts.examples[0]
    validate_all("anomaly-event", events)
    by_item = {e["item_id"]: e for e in events}
    assert "negative_stock" in by_item["sku-2-3"]["rules"] and by_item["sku-2-3"]["kind"] == "data_quality"
    assert "min_ge_max" in by_item["sku-2-7"]["rules"]
    assert by_item["sku-2-5"]["kind"] == "model" and "its group's median" in by_item["sku-2-5"]["reasons"][0]
    assert by_item["sku-2-3"]["source"] == {"topic": SOURCE, "partition": 0, "offset": 503, "timestamp": None}
    for e in events:
        assert e["anomaly_id"] == item_anomaly_id(SOURCE, e["item_id"], "unversioned")
    # exactly the detector's decisions for items it has never seen (what consume does with a new item)
    batch = parse_updates([d for k, d in enumerate(docs) if k != 9])[0]
    decisions, _ = detector.decide_batch(StateTable(), batch)
    assert sorted(by_item) == sorted(np.array(batch.item_ids)[decisions.is_anomaly].tolist())
    assert sorted(by_item) == ["sku-2-3", "sku-2-5", "sku-2-7"]  # the clean rest of the snapshot passes


def test_each_document_is_judged_alone_even_for_one_item_twice(detector: ChangeDetector) -> None:
    doc = inventory(1, 3)[0]
    twice = [doc, doc | {"_id": "other", "item_id": doc["_id"], "stock_quantity": -1}, doc]
    _, events = scan_changes(detector, twice, SOURCE, 0, DocCounts())
    alone = [scan_changes(detector, [d], SOURCE, 0, DocCounts())[1] for d in twice]
    assert [e["source"]["offset"] for e in events] == [1]  # the negative one only, at its row
    assert [len(a) for a in alone] == [0, 1, 0]  # no duplicate_update / reverted_stock against the others


def test_the_scan_reads_the_peer_group(detector: ChangeDetector) -> None:
    assert inventory_fields(detector) == ("category", "occurred_at")
