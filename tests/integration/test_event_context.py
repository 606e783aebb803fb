"""On the real broker: an update's unknown fields and its ``traceparent`` header reach its anomaly event.

`stockwatch consume` runs as a subprocess on a model trained with ``stockwatch train --detector
seed`` / ``--detector default``; the retrain worker's ``report.png`` is in the version directory
and ``STOCKWATCH_REPORT_URL_TEMPLATE`` is set, so ``links.report`` is the templated URL.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from config import Settings
from consumer.cli import main as cli_main
from consumer.scoring.wiring import build_service
from consumer.wire.context import REPORT_FILE
from detection import ModelStore, parse_item, train_model
from tests.integration.test_consume import make_item, read_topic
from tests.schemas import validate

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
UNKNOWN = {"warehouse_id": "WH-7", "supplier": {"name": "acme", "id": 12}}
TEMPLATE = "https://models.example/{version}/report.png"


def snapshot(path: Path) -> Path:
    rng = random.Random(11)
    rows = []
    for i in range(300):
        hi = rng.randint(50, 200)
        rows.append({"item_id": f"sku-{i}", "category": "tv" if i % 2 else "bolts", "min_stock_level": hi // 5,
                     "stock_quantity": rng.randint(hi // 4, hi), "max_stock_level": hi,
                     "price": round(rng.uniform(5, 50), 2)})  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize(
    ("detector", "client"),
    [
        ("seed", "kafka-python"),
        ("seed", "confluent-kafka"),
        ("default", "kafka-python"),
        ("default", "confluent-kafka"),
    ],
)
def test_unknown_fields_and_traceparent_reach_the_anomaly_event(
    detector: str,
    client: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = tmp_path / "models"
    assert cli_main(["train", "--items", str(snapshot(tmp_path / "items.jsonl")), "--model-dir", str(models),
                     "--detector", detector]) == 0  # fmt: skip
    version = json.loads(capsys.readouterr().out)["version"]
    (models / version / REPORT_FILE).write_bytes(b"\x89PNG")  # what the retrain worker writes
    env = {
        "STOCKWATCH_KAFKA_CLIENT": client,
        "STOCKWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "STOCKWATCH_INPUT_TOPIC": topic_factory("in"),
        "STOCKWATCH_ANOMALY_TOPIC": topic_factory("anomalies"),
        "STOCKWATCH_DLQ_TOPIC": topic_factory("dlq"),
        "STOCKWATCH_STATUS_TOPIC": topic_factory("status"),
        "STOCKWATCH_GROUP_ID": unique_name("group"),
        "STOCKWATCH_MODEL_DIR": str(models),
        "STOCKWATCH_HTTP_PORT": "0",
        "STOCKWATCH_SESSION_TIMEOUT_MS": "10000",
        "STOCKWATCH_CREATE_MISSING_TOPICS": "false",
        "STOCKWATCH_STATE_SEED": "none",  # items start from their first (complete) update
        "STOCKWATCH_REPORT_URL_TEMPLATE": TEMPLATE,
    }
    first = {"item_id": "sku-1", "stock_quantity": 40, "min_stock_level": 10, "max_stock_level": 100,
             "price": 20.0, "category": "tv", "occurred_at": "2026-12-01T10:00:00Z"}  # fmt: skip
    broken = {"item_id": "sku-1", "stock_quantity": 999_999, "min_stock_level": 10, "max_stock_level": 100,
              "price": -5.0, "occurred_at": "2026-12-01T10:05:00Z"} | UNKNOWN  # fmt: skip
    headers = [("traceparent", TRACEPARENT), ("x-internal", b"not propagated")]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        producer.send(env["STOCKWATCH_INPUT_TOPIC"], key=b"sku-1", value=orjson.dumps(first)).get(10)
        producer.send(
            env["STOCKWATCH_INPUT_TOPIC"], key=b"sku-1", value=orjson.dumps(broken), headers=headers
        ).get(10)
    finally:
        producer.close()

    full = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")} | env
    log = tmp_path / "consume.log"
    proc = subprocess.Popen([sys.executable, "-m", "consumer.cli", "consume"], cwd=REPO, env=full | {"PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))  # fmt: skip
    processes.append(proc)
    event, record = _the_event_of(
        kafka_bootstrap, env["STOCKWATCH_ANOMALY_TOPIC"], offset=1, proc=proc, log=log
    )
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)

    validate("anomaly-event", event)
    read_by_default = {"occurred_at": broken["occurred_at"]}  # the seed reads no time: an attribute there
    assert event["item"]["attributes"] == UNKNOWN | (read_by_default if detector == "seed" else {})
    assert event["item"]["attributes_truncated"] is False
    assert [(k, v) for k, v in record.headers] == [("traceparent", TRACEPARENT)]
    assert event["model_version"] == version
    assert event["links"] == {
        "model": (models / version).resolve().as_uri() + "/",
        "report": TEMPLATE.replace("{version}", version),
    }


def _the_event_of(
    bootstrap: str, topic: str, *, offset: int, proc: subprocess.Popen[bytes], log: Path
) -> tuple[dict[str, Any], Any]:
    """The anomaly event of input ``offset`` and its record (fails if the consumer exits first)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for record in read_topic(bootstrap, topic, timeout=3.0):
            event = orjson.loads(record.value)
            if event["source"]["offset"] == offset:
                return event, record
        assert proc.poll() is None, f"consume exited {proc.returncode}: {log.read_text()[-2000:]}"
    pytest.fail(f"no anomaly event for offset {offset} within 90 s: {log.read_text()[-2000:]}")


def test_attributes_no_document_store_holds_are_left_out_and_the_audit_takes_the_event(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    mongo_uri: str,
    mongo_db: Any,
    tmp_path: Path,
) -> None:
    """FerretDB refuses ``$``-prefixed and dotted keys, BSON NULs and integers beyond 64 bits: such
    attributes never reach the event, so the Mongo audit writes it (and the batch is not retried)."""
    models = tmp_path / "models"
    rng = random.Random(3)
    ModelStore(models).publish(train_model([parse_item(make_item(i, rng)) for i in range(300)]))
    hostile = {"$where": "1", "a.b": 2, "nested": {"x.y": 1}, "huge": 2**64 - 1, "nul\x00": 1, "ok": "kept"}
    planted = make_item(0, rng, planted=True) | hostile
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        input_topic=topic_factory("in"),
        anomaly_topic=topic_factory("anomalies"),
        dlq_topic=topic_factory("dlq"),
        status_topic=topic_factory("status"),
        group_id=unique_name("group"),
        model_dir=models,
        http_port=0,
        create_missing_topics=False,
        audit_anomalies=True,
        mongo_uri=mongo_uri,
        mongo_db=mongo_db.name,
    )
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        producer.send(settings.input_topic, key=b"SKU-00000", value=orjson.dumps(planted),
                      headers=[("traceparent", TRACEPARENT)]).get(10)  # fmt: skip
    finally:
        producer.close()
    stats = build_service(settings).run(max_events=1, timeout=60)
    assert (stats.events_in, stats.anomalies) == (1, 1)
    (doc,) = mongo_db["anomalies"].find()
    assert doc["item"]["attributes"] == {"ok": "kept"}
    assert doc["item"]["attributes_truncated"] is True
    (record,) = read_topic(kafka_bootstrap, settings.anomaly_topic, expect=1)
    assert orjson.loads(record.value)["anomaly_id"] == doc["_id"]
    assert [(k, v) for k, v in record.headers] == [("traceparent", TRACEPARENT)]
