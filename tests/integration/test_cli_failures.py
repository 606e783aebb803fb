"""Failures in one line, on time (issue 14 point 4), against the real broker and FerretDB.

Closed ports are real: ``127.0.0.1:1`` refuses every connection. Each command runs as a
subprocess, as a user runs it: one line on stderr naming the setting and the address, exit 1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from kafka import KafkaAdminClient

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLOSED = "127.0.0.1:1"
KEY = "cli-failures-control-key-0123456789abcdef"


@pytest.fixture
def base_env(tmp_path: Path, kafka_bootstrap: str, mongo_uri: str) -> dict[str, str]:
    (tmp_path / "empty.toml").touch()
    models = tmp_path / "models"
    models.mkdir()
    return {
        "STOCKWATCH_CONFIG": str(tmp_path / "empty.toml"),
        "STOCKWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "STOCKWATCH_KAFKA_BOOTSTRAP_TIMEOUT_S": "3",
        "STOCKWATCH_MONGO_URI": mongo_uri,
        "STOCKWATCH_WORKER_MONGO_TIMEOUT_S": "2",
        "STOCKWATCH_MODEL_DIR": str(models),
        "STOCKWATCH_HTTP_PORT": "0",
        "STOCKWATCH_WORKER_HTTP_PORT": "0",
        "STOCKWATCH_CONTROL_KEY": KEY,
    }


def stockwatch(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", *args],
        check=False,
        env={**clean, **env, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The failure's line; the services' INFO start-up logs (JSON lines) may precede it, nothing else."""
    logs = [orjson.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    plain = [line for line in proc.stderr.strip().splitlines() if not line.startswith("{")]
    assert len(plain) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [log for log in logs if log["level"] in ("ERROR", "CRITICAL")] == [], proc.stderr
    return plain[0]


def train(env: dict[str, str], tmp_path: Path) -> str:
    rng = np.random.default_rng(4)
    items = tmp_path / "items.jsonl"
    items.write_bytes(
        b"".join(
            orjson.dumps({"item_id": f"sku-{i}", "stock_quantity": int(rng.integers(60, 190))}) + b"\n"
            for i in range(200)
        )
    )
    proc = stockwatch(
        env, "train", "--detector", "seed", "--items", str(items)
    )  # items with stock only: the seed's defaults
    assert proc.returncode == 0, proc.stderr
    return str(orjson.loads(proc.stdout)["version"])


@pytest.mark.parametrize(
    "argv", [["consume"], ["retrain-worker"], ["scan", "--publish"], ["ctl", "status", "--timeout", "3"]]
)
def test_kafka_unreachable_is_one_line_naming_the_setting_and_address(
    base_env: dict[str, str], tmp_path: Path, argv: list[str]
) -> None:
    if argv[0] == "scan":
        train(base_env, tmp_path)
    proc = stockwatch(base_env | {"STOCKWATCH_KAFKA_BOOTSTRAP": CLOSED}, *argv)
    assert proc.returncode == 1
    line = one_line(proc)
    assert "STOCKWATCH_KAFKA_BOOTSTRAP" in line and CLOSED in line


@pytest.mark.parametrize("argv", [["retrain-worker", "--run-for", "5"], ["scan"]])
@pytest.mark.parametrize(
    "uri",
    [f"mongodb://stock:hunter2-secret@{CLOSED}/warehouse", "mongodb://stock:hunter2-secret@host:notaport/"],
    ids=["closed-port", "bad-uri"],
)
def test_mongo_unreachable_or_a_bad_uri_is_one_line_without_the_password(
    base_env: dict[str, str], tmp_path: Path, argv: list[str], uri: str
) -> None:
    train(base_env, tmp_path)  # the worker would otherwise start by retraining
    proc = stockwatch(base_env | {"STOCKWATCH_MONGO_URI": uri}, *argv)
    assert proc.returncode == (2 if "notaport" in uri else 1)  # a malformed URI is a setting to fix
    line = one_line(proc)
    assert "STOCKWATCH_MONGO_URI" in line and "stock:**********@" in line
    assert "hunter2" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "uri",
    [
        "mongodb//stock:hunter2-secret@127.0.0.1:27017/warehouse",
        "mongodb://stock:hunter2-secret@127.0.0.1:99999/warehouse",
        "mongodb://stock:hunter2-secret:x@127.0.0.1/warehouse",
    ],
    ids=["scheme", "port", "unescaped"],
)
def test_consume_refuses_a_malformed_mongo_uri_at_start_instead_of_retrying(
    base_env: dict[str, str], uri: str
) -> None:
    env = base_env | {"STOCKWATCH_MONGO_URI": uri, "STOCKWATCH_STATE_SEED": "snapshot"}
    proc = stockwatch(env, "consume", "--timeout", "30")  # a retry loop would end 0 after 30 s
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc)
    assert line.startswith("stockwatch consume: STOCKWATCH_MONGO_URI (mongodb"), line
    assert "stock:**********@" in line and ") is not a valid Mongo URI: " in line, line
    assert "hunter2" not in proc.stderr + proc.stdout


def test_an_http_port_in_use_is_one_line_naming_the_setting(base_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = base_env | {
            "STOCKWATCH_HTTP_PORT": str(port),
            "STOCKWATCH_HTTP_HOST": "127.0.0.1",
            "STOCKWATCH_CREATE_MISSING_TOPICS": "false",
        }
        proc = stockwatch(env, "consume", "--timeout", "30")
    assert proc.returncode == 1
    line = one_line(proc)
    assert "STOCKWATCH_HTTP_PORT" in line and f"127.0.0.1:{port}" in line


@pytest.mark.parametrize("which", ["STOCKWATCH_CONTROL_TOPIC", "STOCKWATCH_STATUS_TOPIC"])
def test_ctl_reports_a_missing_topic_and_does_not_create_it(
    base_env: dict[str, str],
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    which: str,
) -> None:
    env = base_env | {
        "STOCKWATCH_CONTROL_TOPIC": topic_factory("control"),
        "STOCKWATCH_STATUS_TOPIC": topic_factory("status"),
    }
    missing = unique_name("mistyped-topic")
    proc = stockwatch(env | {which: missing}, "ctl", "status", "--timeout", "10")
    assert proc.returncode == 1
    line = one_line(proc)
    assert which in line and missing in line and "does not exist" in line
    admin: Any = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert missing not in admin.list_topics()
    finally:
        admin.close()


def test_scan_of_an_empty_collection_warns_and_exits_0(
    base_env: dict[str, str], tmp_path: Path, mongo_db: Any, unique_name: Callable[[str], str]
) -> None:
    train(base_env, tmp_path)
    collection = unique_name("empty").replace("-", "_")
    env = base_env | {"STOCKWATCH_MONGO_DB": mongo_db.name, "STOCKWATCH_MONGO_COLLECTION": collection}
    proc = stockwatch(env, "scan")
    assert proc.returncode == 0, proc.stderr
    warnings = [orjson.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    assert any(
        w["level"] == "WARNING" and f"{mongo_db.name}.{collection}" in w["msg"] and "no documents" in w["msg"]
        for w in warnings
    ), proc.stderr


def test_ctl_retrain_force_sends_a_signed_force_arg(
    base_env: dict[str, str], kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    from consumer.adapters.kafka import TopicTail
    from consumer.wire.control import verify

    control = topic_factory("control")
    env = base_env | {"STOCKWATCH_CONTROL_TOPIC": control, "STOCKWATCH_STATUS_TOPIC": topic_factory("status")}
    proc = stockwatch(env, "ctl", "retrain", "--force", "--no-wait", "--timeout", "20")
    assert proc.returncode == 0, proc.stderr
    tail = TopicTail(kafka_bootstrap, control)
    try:
        records = []
        for _ in range(20):
            records += tail.poll(0.5)
            if records:
                break
    finally:
        tail.close()
    assert len(records) == 1
    cmd = verify(orjson.loads(records[0][1]), KEY.encode(), now=datetime.now(UTC), max_age_s=300)
    assert cmd.command.value == "retrain" and cmd.args == {"force": True}
