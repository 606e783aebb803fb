"""`stockwatch feedback` -> the retrain worker -> Mongo, metrics, `models show`, suppressions, training
(of the seed detector, `detector="seed"`: the labelled rows and gate asserted here are its own)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from consumer.adapters.mongo import WorkerMongo
from consumer.cli import main
from consumer.retraining.retrainer import Retrainer
from consumer.retraining.wiring import retrain_config
from consumer.stores import store_from_settings
from tests.integration.retrain_support import inventory_docs, publish_model, running_worker, settings_factory
from tests.schemas import validate

pytestmark = pytest.mark.integration
__all__ = ["settings_factory"]  # the fixture, re-exported for pytest

ITEM = {
    "item_id": "sku-1",
    "stock_quantity": 90_000,
    "min_stock_level": 10,
    "max_stock_level": 200,
    "price": 5.0,
}


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout_s}s")
        time.sleep(0.3)
    return value


def feedback(capsys: Any, *args: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["feedback", *args]) == 0
    return validate("feedback-message", orjson.loads(capsys.readouterr().out))


def event_id(*parts: str) -> str:
    """An id of the form `feedback` accepts (32 lowercase hex digits), distinct per ``parts``."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def counter_samples(worker: Any) -> dict[tuple[str, str], float]:
    assert worker.feedback is not None
    return {
        (s.labels["label"], s.labels["model_version"]): s.value
        for m in worker.feedback.counter.collect()
        for s in m.samples
        if s.name == "stockwatch_feedback_total"
    }


def test_labels_reach_the_registry_the_metric_models_show_and_suppressions(
    settings_factory: Any, topic_factory: Any, mongo_db: Any, capsys: Any, monkeypatch: Any
) -> None:
    settings = settings_factory(detector="seed", feedback_topic=topic_factory("feedback"))
    version = publish_model(settings)
    confirmed_id, fp_id = "c" * 32, "f" * 32
    mongo_db["anomalies"].insert_many(  # the consumer's audit (audit_anomalies = true)
        [
            {
                "_id": confirmed_id,
                "anomaly_id": confirmed_id,
                "model_version": version,
                "item_id": "sku-0",
                "item": ITEM | {"item_id": "sku-0"},
            },
            {"_id": fp_id, "anomaly_id": fp_id, "model_version": version, "item_id": "sku-1", "item": ITEM},
        ]
    )
    with running_worker(settings) as worker:
        sent = feedback(capsys, confirmed_id, "confirmed", "--note", "shelf count confirmed")
        assert sent["who"].count("@") == 1 and sent["note"] == "shelf count confirmed"
        feedback(capsys, fp_id, "false_positive", "--suppress-for", "1h", "--reason", "stock")
        feedback(capsys, "a" * 32, "false_positive", "--model-version", version, "--item", "sku-9")
        feedback(capsys, "b" * 32, "confirmed")  # no audit, no --model-version: counted as unknown
        registry = mongo_db["model_versions"]
        counts = wait_for(
            "the registry counts",
            lambda: (
                (registry.find_one({"_id": version}) or {}).get("feedback", {}).get("false_positive") == 2
                and registry.find_one({"_id": version})["feedback"]
            ),
        )
        assert (counts["confirmed"], counts["false_positive"]) == (1, 2)
        assert counts["precision"] == pytest.approx(1 / 3)
        wait_for("the unknown version", lambda: registry.find_one({"_id": "unknown"}))
        assert registry.find_one({"_id": "unknown"})["feedback"]["confirmed"] == 1
        samples = counter_samples(worker)
        served = worker.monitor.metrics.render().decode()  # what the worker's /metrics serves
    assert samples == {
        ("confirmed", version): 1,
        ("false_positive", version): 2,
        ("confirmed", "unknown"): 1,
    }
    assert 'stockwatch_feedback_total{label="confirmed",model_version="unknown"} 1.0' in served
    assert f'stockwatch_feedback_total{{label="false_positive",model_version="{version}"}} 2.0' in served
    assert mongo_db["feedback"].find_one({"_id": fp_id})["item"] == ITEM  # the scored state, for the gate

    capsys.readouterr()
    assert main(["models", "show"]) == 0
    shown = validate("models-show", orjson.loads(capsys.readouterr().out))
    assert shown["version"] == version
    assert (shown["feedback"]["confirmed"], shown["feedback"]["false_positive"]) == (1, 2)

    assert main(["suppressions", "list", "--json"]) == 0
    [row] = [
        validate("suppressions-list", orjson.loads(line)) for line in capsys.readouterr().out.splitlines()
    ]
    assert (row["id"], row["item_id"], row["reason"]) == (fp_id, "sku-1", "stock")
    assert main(["suppressions", "list"]) == 0
    table = capsys.readouterr().out
    assert "sku-1" in table and fp_id in table

    with running_worker(settings):  # the analyst corrects the label: the episode's suppression ends
        feedback(capsys, fp_id, "confirmed")
        wait_for(
            "the lifted suppression",
            lambda: mongo_db["suppressions"].find_one({"_id": fp_id}).get("lifted_by"),
        )
    capsys.readouterr()
    assert main(["suppressions", "list", "--json"]) == 0
    assert capsys.readouterr().out.strip() == ""  # kept for the audit trail, no longer active

    monkeypatch.setenv("STOCKWATCH_MONGO_URI", "mongodb://127.0.0.1:1")  # nothing listens there
    assert main(["models", "show"]) == 0
    assert "feedback" not in orjson.loads(capsys.readouterr().out)  # absent, not an error
    assert main(["suppressions", "list"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("stockwatch suppressions:") and "\n" not in err


def test_feedback_usage_errors_are_one_line(settings_factory: Any, topic_factory: Any, capsys: Any) -> None:
    settings_factory(detector="seed", feedback_topic=topic_factory("feedback"))
    for args in (
        ["e" * 32, "confirmed", "--suppress-for", "1h"],
        ["e" * 32, "false_positive", "--suppress-for", "soon"],
        ["ep-1", "confirmed"],  # not an id StockWatch makes
    ):
        capsys.readouterr()
        assert main(["feedback", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("stockwatch feedback:") and "\n" not in err
    with pytest.raises(SystemExit):
        main(["feedback", "e" * 32, "maybe"])


def test_a_suppression_the_settings_make_moot_is_sent_with_a_warning(
    settings_factory: Any, topic_factory: Any, capsys: Any
) -> None:
    settings_factory(detector="seed", feedback_topic=topic_factory("feedback"), alert_mode="every-update")
    capsys.readouterr()
    assert main(["feedback", "e" * 32, "false_positive", "--suppress-for", "1h"]) == 0
    err = capsys.readouterr().err
    assert "pass --item ITEM_ID" in err and "alert_mode=every-update" in err
    assert main(["feedback", "e" * 32, "false_positive", "--suppress-for", "1h", "--item", "sku-1"]) == 0
    assert "--item" not in capsys.readouterr().err


def test_labels_steer_training_and_the_gate_reports_labelled_precision(
    settings_factory: Any, topic_factory: Any, mongo_db: Any, capsys: Any
) -> None:
    settings = settings_factory(
        detector="seed", feedback_topic=topic_factory("feedback"), gate_min_labels="3"
    )
    version = publish_model(settings)
    docs = inventory_docs(100, 8, planted=0.05)
    mongo_db["inventory"].insert_many(docs)
    flagged = [d["_id"] for d in docs[:10]]
    mongo_db["anomalies"].insert_many([{"_id": f"a{i}", "item_id": item} for i, item in enumerate(flagged)])
    with running_worker(settings):
        for item in flagged[:2]:  # flagged, but analysts say normal: kept in training
            feedback(
                capsys, event_id("fp", item), "false_positive", "--item", item, "--model-version", version
            )
        for d in docs[20:23]:  # not flagged, but confirmed anomalies: left out
            feedback(
                capsys, event_id("c", d["_id"]), "confirmed", "--item", d["_id"], "--model-version", version
            )
        wait_for("five stored labels", lambda: mongo_db["feedback"].count_documents({}) == 5)
    db = WorkerMongo(settings.mongo_uri, settings.mongo_db, timeout_ms=3000)
    try:
        retrainer = Retrainer(
            db=db,
            store=store_from_settings(settings),
            announce=lambda _: None,
            config=retrain_config(settings),
        )
        out = retrainer.run({"kind": "test"})
    finally:
        db.close()
    assert out.snapshot["excluded_flagged"] == 10 - 2 + 3
    assert out.snapshot["usable"] == 100 - 11
    assert out.snapshot["labels"]["excluded_confirmed_items"] == 3
    assert out.snapshot["labels"]["kept_false_positive_items"] == 2
    labelled = out.gate["checks"]["labelled"]
    assert (labelled["labels"], labelled["confirmed"]) == (5, 3)
    for side in ("candidate", "current"):
        assert set(labelled[side]) == {"flagged", "precision", "recall"}
    refused = any("labelled precision" in r or "labelled items" in r for r in out.reasons)
    cand, cur = labelled["candidate"]["precision"], labelled["current"]["precision"]
    assert refused == ((cand is not None and cur is not None and cand < cur) or (cand is None and bool(cur)))
