"""The retrain worker with ``detector=default`` on the real broker and FerretDB: a seed -> default
swap, a default -> default retrain gated against the current model, peers grouped by the
configured ``peer_group_field``, and `stockwatch score --baseline` deciding with the published model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.cli import main
from consumer.stores import store_from_settings
from detection import ChangeDetector
from tests.integration.retrain_support import (
    Status,
    inventory_docs,
    publish_model,
    running_worker,
    settings_factory,
)
from tests.schemas import validate_all

pytestmark = pytest.mark.integration
__all__ = ["settings_factory"]  # the fixture, re-exported for pytest


def categorised(n: int, seed: int) -> list[dict[str, Any]]:
    """Inventory documents with two candidate peer groups: ``category`` and ``warehouse_id``."""
    return [doc | {"category": f"cat-{k % 4}", "warehouse_id": f"wh-{k % 3}"}
            for k, doc in enumerate(inventory_docs(n, seed))]  # fmt: skip


def ctl_retrain(capsys: Any) -> dict[str, Any]:
    """``stockwatch ctl retrain``; its final acknowledgement (exit 0 = promoted)."""
    capsys.readouterr()
    assert main(["ctl", "retrain", "--timeout", "120"]) == 0
    lines = validate_all("ctl-line", (orjson.loads(line) for line in capsys.readouterr().out.splitlines()))
    assert lines[-1]["status"] == "done" and lines[-1]["result"]["status"] == "promoted", lines[-1]
    return lines[-1]


def test_a_seed_to_default_swap_then_a_default_retrain_publish_models_score_can_use(
    settings_factory: Any, mongo_db: Any, capsys: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_factory(detector="default", alert_budget_per_1000="1.0", retrain_cooldown_s=0,
                                peer_group_field="warehouse_id")  # fmt: skip
    docs = categorised(300, 11)
    mongo_db["inventory"].insert_many([*docs, {"_id": "half", "stock_quantity": 3}])
    seed_version = publish_model(settings)  # serving: a seed model
    status = Status(settings)
    try:
        with running_worker(settings):
            swap = ctl_retrain(capsys)["result"]
            again = ctl_retrain(capsys)["result"]
            status.wait(lambda seen: len(status.of_type("model_published")) >= 2)
    finally:
        status.close()
    validate_all("status-message", status.seen)
    store = store_from_settings(settings)
    assert store.current_version() == again["version"] != swap["version"]
    registry = {d["_id"]: d for d in mongo_db["model_versions"].find({"status": "promoted"})}

    first = registry[swap["version"]]  # seed -> default: nothing comparable, promoted on its own checks
    assert first["detector"] == "default" and first["metadata"]["detector"] == "default"
    checks = first["gate"]["checks"]
    assert checks["current_version"] == seed_version
    assert checks["comparison"].startswith("skipped: the current model is a seed model")
    assert checks["alerts_per_1000"]["budget"] == 1.0
    assert checks["alerts_per_1000"]["fresh_normal_motion"] <= checks["alerts_per_1000"]["max"] == 3.0
    assert first["snapshot"]["usable"] == 300 and first["snapshot"]["invalid"] == 1  # "half" lacks numbers

    second = registry[again["version"]]  # default -> default: compared with the current model
    planted = second["gate"]["checks"]["planted_recall"]
    assert set(planted) == {"candidate", "current"}
    assert planted["candidate"]["all"] >= planted["current"]["all"] - 0.05
    assert "agreement" in second["gate"]["checks"]
    published = [m for m in status.of_type("model_published") if m.get("version") == again["version"]]
    assert published and published[0]["detector"] == "default"
    assert (settings.model_dir / again["version"] / "report.png").stat().st_size > 10_000

    model = store.load_any()
    assert isinstance(model, ChangeDetector) and model.metadata.alert_budget_per_1000 == 1.0
    assert model.metadata.group_field == "warehouse_id"  # the setting, read through Mongo's projection
    assert set(model.metadata.peer_groups) == {"wh-0", "wh-1", "wh-2"}
    capsys.readouterr()
    assert main(["models", "show"]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert (shown["version"], shown["detector"]) == (again["version"], "default")

    # stockwatch score --baseline S: the snapshot seeds the item states, the published model decides
    baseline, events, output = tmp_path / "items.jsonl", tmp_path / "events.jsonl", tmp_path / "out.jsonl"
    baseline.write_bytes(b"".join(orjson.dumps({"item_id": d["_id"], **d}) + b"\n" for d in docs))
    normal = [{"item_id": d["_id"], "stock_quantity": d["stock_quantity"] - 1} for d in docs[:20]]
    wrong = [{"item_id": d["_id"], "price": round(d["price"] * 100, 2)} for d in docs[20:25]]  # decimal slips
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in [*normal, *wrong]))
    monkeypatch.setenv("STOCKWATCH_PEER_GROUP_FIELD", "none")  # score follows the model, not the setting
    rc = main(["score", "--baseline", str(baseline), "--input", str(events), "--output", str(output)])
    assert rc == 0  # partial updates merged onto the baseline: none is a missing_field
    lines = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    assert len(lines) == 25 and {line["model_version"] for line in lines} == {again["version"]}
    assert [line["is_anomaly"] for line in lines[20:]] == [True] * 5
    assert sum(line["is_anomaly"] for line in lines[:20]) <= 1
    assert any(line["features"]["price_vs_peers"] != 0.0 for line in lines[:20])  # warehouse peers seeded


def test_no_peer_grouping_reads_the_inventory_without_projecting_an_empty_field(
    settings_factory: Any, mongo_db: Any
) -> None:
    """A model with ``peer_group_field = none`` records the group field ``""``; the worker's snapshot,
    consume's inventory seed and scan ask for it with the other fields, and a projection of ``""``
    is refused by the server ("FieldPath cannot be constructed with empty string")."""
    from consumer.retraining.wiring import worker_mongo

    settings = settings_factory(peer_group_field="none")
    assert settings.models.peer_group_field == ""
    docs = categorised(5, 12)
    mongo_db["inventory"].insert_many(docs)
    db = worker_mongo(settings)
    try:
        fields = (settings.models.peer_group_field, "occurred_at")
        read = list(db.iter_inventory(batch_size=10, fields=fields))
        found = db.find_items([d["_id"] for d in docs[:2]], fields=fields)
    finally:
        db.close()
    assert sorted(d["_id"] for d in read) == sorted(d["_id"] for d in docs)
    assert all("category" not in d and d["price"] > 0 for d in read)  # only what the detector reads
    assert sorted(d["_id"] for d in found) == sorted(d["_id"] for d in docs[:2])
