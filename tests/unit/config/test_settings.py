"""Settings: the issue's exact names and defaults, and the precedence env > file > default."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import DEFAULT_CONFIG_FILE, Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("STOCKWATCH_"):
            monkeypatch.delenv(key)


def test_defaults_are_the_documented_ones() -> None:
    s = Settings()
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.mongo_uri == "mongodb://127.0.0.1:27017"
    assert (s.mongo_db, s.mongo_collection) == ("warehouse", "inventory")
    assert s.input_topic == "inventory.stock-updates"
    assert s.anomaly_topic == "inventory.anomalies"
    assert s.dlq_topic == "inventory.stock-updates.dlq"
    assert (s.control_topic, s.status_topic) == ("stockwatch.control", "stockwatch.status")
    assert s.group_id == "stockwatch-scorer"
    assert s.model_dir == Path("./models")


def test_environment_beats_file_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "sw.toml"
    cfg.write_text('group_id = "from-file"\ninput_topic = "file-topic"\n')
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(cfg))
    monkeypatch.setenv("STOCKWATCH_INPUT_TOPIC", "env-topic")
    s = Settings()
    assert s.group_id == "from-file"
    assert s.input_topic == "env-topic"
    assert s.anomaly_topic == "inventory.anomalies"


def test_unknown_keys_in_the_file_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "sw.toml"
    cfg.write_text('anomaly_topik = "typo"\n')
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(cfg))
    with pytest.raises(ValidationError, match="anomaly_topik"):
        Settings()


def test_input_topic_must_not_be_an_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKWATCH_ANOMALY_TOPIC", "inventory.stock-updates")
    with pytest.raises(ValidationError, match="must differ"):
        Settings()


def test_secrets_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKWATCH_MODEL_SIGNING_KEY", "hunter2-hunter2-hunter2-hunter2-hunter2")
    s = Settings()
    assert "hunter2" not in repr(s)
    assert s.model_signing_key is not None
    assert s.model_signing_key.get_secret_value() == "hunter2-hunter2-hunter2-hunter2-hunter2"


def test_shipped_config_file_matches_the_defaults() -> None:
    """config/stockwatch.toml documents the defaults: it must not drift from them."""
    shipped = tomllib.loads(DEFAULT_CONFIG_FILE.read_text())
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    for key, value in shipped.items():
        want = defaults[key]
        got = Path(value) if isinstance(want, Path) else value
        assert got == want, key


def test_confluent_client_limits_are_checked_up_front() -> None:
    with pytest.raises(ValidationError, match="max_poll_interval_ms >= session_timeout_ms"):
        Settings(kafka_client="confluent-kafka", max_poll_interval_ms=20_000, session_timeout_ms=45_000)
    Settings(kafka_client="kafka-python", max_poll_interval_ms=20_000, session_timeout_ms=45_000)
    with pytest.raises(ValidationError, match="max_poll_records"):
        Settings(max_poll_records=2_000_000)
