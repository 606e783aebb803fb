"""`stockwatch config`: every effective setting with its source; keys and the Mongo password masked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import config
from config import DEFAULT_CONFIG_FILE, Settings
from consumer.cli import main


def run_config(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["config", *args])
    out, _ = capsys.readouterr()
    return code, out


def test_json_names_the_source_of_every_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "sw.toml"
    cfg.write_text('group_id = "from-file"\nmax_poll_records = 10\n')
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(cfg))
    monkeypatch.setenv("STOCKWATCH_MAX_POLL_RECORDS", "20")
    code, out = run_config(capsys, "--json")
    shown = json.loads(out)
    assert code == 0 and sorted(shown) == sorted(Settings.model_fields)
    assert shown["group_id"] == {"value": "from-file", "source": str(cfg), "env": "STOCKWATCH_GROUP_ID"}
    assert shown["max_poll_records"]["value"] == 20
    assert shown["max_poll_records"]["source"] == "env STOCKWATCH_MAX_POLL_RECORDS"
    assert shown["http_port"] == {"value": 9400, "source": "default", "env": "STOCKWATCH_HTTP_PORT"}
    assert shown["decisions_topic"]["value"] is None and shown["model_dir"]["value"] == "models"


def test_without_stockwatch_config_the_packaged_file_is_the_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out = run_config(capsys, "--json")
    shown = json.loads(out)
    assert shown["kafka_bootstrap"]["source"] == str(DEFAULT_CONFIG_FILE)
    assert shown["session_timeout_ms"]["source"] == "default"  # not in the packaged file


def test_secrets_are_masked_in_the_table_and_the_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STOCKWATCH_CONTROL_KEY", "hunter2-key-0123456789abcdefghijklmnop")
    monkeypatch.setenv("STOCKWATCH_MODEL_SIGNING_KEY", "sign-me-secret-0123456789abcdefghijkl")
    monkeypatch.setenv("STOCKWATCH_MONGO_URI", "mongodb://app:mongo-pass-word@db:27017/?authSource=admin")
    monkeypatch.setenv("STOCKWATCH_NOTIFY_WEBHOOK", "https://hooks.example.com/services/webhook-t0ken")
    code, table = run_config(capsys)
    _, as_json = run_config(capsys, "--json")
    assert code == 0
    for out in (table, as_json):
        assert not any(
            s in out
            for s in (
                "hunter2-key-0123456789abcdefghijklmnop",
                "sign-me-secret-0123456789abcdefghijkl",
                "mongo-pass-word",
                "webhook-t0ken",
            )
        ), out
    shown = json.loads(as_json)
    assert shown["control_key"]["value"] == shown["model_signing_key"]["value"] == "**********"
    assert shown["notify_webhook"]["value"] == "**********"
    assert shown["mongo_uri"]["value"] == "mongodb://app:**********@db:27017/?authSource=admin"
    rows = {line.split()[0]: line.split() for line in table.splitlines()}
    assert rows["SETTING"] == ["SETTING", "VALUE", "SOURCE"]
    assert rows["control_key"][1:] == ["**********", "env", "STOCKWATCH_CONTROL_KEY"]
    assert rows["decisions_topic"][1:] == ["(unset)", "default"]


def test_the_command_imports_no_ml_or_kafka_client(tmp_path: Path) -> None:
    code = (
        "import sys; from consumer.cli import main; rc = main(['config']); "
        "heavy = [m for m in ('numba', 'sklearn', 'kafka', 'confluent_kafka', 'pymongo') if m in sys.modules]; "
        "print('HEAVY', heavy, file=sys.stderr); sys.exit(rc)"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(config.__file__).parent.parent)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stderr and "kafka_bootstrap" in done.stdout
