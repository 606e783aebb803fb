"""docker-compose.yml can not run here (no Docker engine): check its structure instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from config.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _env(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    return env


def test_services_and_official_images() -> None:
    services = _compose()["services"]
    assert {"kafka", "mongo", "consumer", "retrain-worker"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["mongo"]["image"].startswith("mongo:")
    for name in ("kafka", "mongo", "consumer"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_ports_match_the_local_stack() -> None:
    services = _compose()["services"]
    assert "9092:9092" in services["kafka"]["ports"]
    assert "27017:27017" in services["mongo"]["ports"]


def test_kafka_is_kraft_single_node_with_single_replica_internal_topics() -> None:
    env = _env(_compose()["services"]["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert int(env[key]) == 1, key


def test_stockwatch_env_names_are_real_settings() -> None:
    """Every STOCKWATCH_* variable in the compose file is a setting the services read."""
    known = {f"STOCKWATCH_{name.upper()}" for name in Settings.model_fields}
    services = _compose()["services"]
    seen: set[str] = set()
    for name in ("consumer", "retrain-worker", "trainer"):
        names = {k for k in _env(services[name]) if k.startswith("STOCKWATCH_")}
        assert names, f"{name} sets no STOCKWATCH_ variable"
        assert names <= known, f"{name}: unknown settings {sorted(names - known)}"
        seen |= names
    assert {"STOCKWATCH_KAFKA_BOOTSTRAP", "STOCKWATCH_MONGO_URI", "STOCKWATCH_MODEL_DIR"} <= seen


def test_services_share_the_model_volume() -> None:
    services = _compose()["services"]
    model_dirs = {
        name: {v for v in services[name]["volumes"] if v.endswith(":/models")}
        for name in ("consumer", "retrain-worker", "trainer")
    }
    assert all(dirs == {"models:/models"} for dirs in model_dirs.values()), model_dirs
    assert "models" in _compose()["volumes"]
