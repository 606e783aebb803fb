"""A malformed ``STOCKWATCH_MONGO_URI`` is refused at once by every command that uses Mongo: one line
saying so (exit 2, a setting to fix), the URI masked, never after a server-selection timeout."""

from __future__ import annotations

import os
import time

import pytest

from consumer.cli import main

PASSWORD = "hunter2-secret"
URIS = [
    f"mongodb//stock:{PASSWORD}@127.0.0.1:27017/warehouse",  # "//" without its ":"
    f"http://stock:{PASSWORD}@127.0.0.1/warehouse",
    f"mongodb://stock:{PASSWORD}@127.0.0.1:notaport/",
]


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))
    monkeypatch.setenv("STOCKWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # the URI is judged before Kafka
    monkeypatch.setenv("STOCKWATCH_MODEL_DIR", str(tmp_path))


@pytest.mark.parametrize("uri", URIS)
@pytest.mark.parametrize(
    "argv",
    [["seed", "--items", "ITEMS"], ["suppressions", "list"], ["scan"], ["consume"], ["retrain-worker"]],
    ids=lambda argv: argv[0],
)
def test_a_malformed_uri_is_one_line_at_once_without_the_password(monkeypatch, tmp_path, capsys, uri, argv):
    monkeypatch.setenv("STOCKWATCH_MONGO_URI", uri)
    items = tmp_path / "items.jsonl"
    items.write_text('{"item_id": "a", "stock_quantity": 5, "min_stock_level": 1, "max_stock_level": 9}\n')
    started = time.monotonic()
    code = main([str(items) if a == "ITEMS" else a for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - started < 5, err
    [line] = [line for line in err.splitlines() if not line.startswith("{")]  # JSON lines: the logs
    assert (
        line.startswith(f"stockwatch {argv[0]}: STOCKWATCH_MONGO_URI (")
        and "is not a valid Mongo URI: " in line
    )
    assert "stock:**********@" in line and PASSWORD not in err
