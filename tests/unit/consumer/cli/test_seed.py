"""`stockwatch seed`: bad lines are reported and skipped, unreadable input and Mongo outages are one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consumer.cli import main

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(autouse=True)
def unreachable_mongo(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("STOCKWATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("STOCKWATCH_MONGO_URI", "mongodb://app:pw-secret-77@127.0.0.1:1")
    monkeypatch.setenv("STOCKWATCH_WORKER_MONGO_TIMEOUT_S", "0.5")


def test_a_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["seed", "--items", str(tmp_path / "nope.jsonl")]) == 2
    _, err = capsys.readouterr()
    assert err.strip().count("\n") == 0 and f"--items: no such file: {tmp_path / 'nope.jsonl'}" in err


def test_bad_lines_are_reported_and_a_file_without_items_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"item_id": "a", "stock_quantity": \n[1, 2]\n{"stock_quantity": 3}\n\n')
    assert main(["seed", "--items", str(items)]) == 2
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert [line.split(": rejected")[0].rsplit("line ", 1)[1] for line in lines[:3]] == ["1", "2", "3"]
    assert "holds no valid item (3 rejected)" in lines[3]


def test_an_unreachable_mongo_is_one_line_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text(
        '{"item_id": "a", "stock_quantity": 5, "min_stock_level": 1, "max_stock_level": 9}\nnot json\n'
    )
    t0 = time.monotonic()
    assert main(["seed", "--items", str(items)]) == 1
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "line 2: rejected" in lines[0]
    assert lines[1].startswith("stockwatch seed: MongoDB at mongodb://app:**********@127.0.0.1:1")
    assert "STOCKWATCH_MONGO_URI" in lines[1] and "pw-secret-77" not in err and "Traceback" not in err
    assert time.monotonic() - t0 < 30


def test_the_command_imports_nothing_heavy() -> None:
    code = "import sys, consumer.cli.seed; print(sorted(m for m in ('pymongo', 'sklearn', 'kafka') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "[]"


def test_a_malformed_mongo_uri_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"item_id": "a", "stock_quantity": 5, "min_stock_level": 1, "max_stock_level": 9}\n')
    monkeypatch.setenv("STOCKWATCH_MONGO_URI", "mongodb://u:pw-secret-66@127.0.0.1:notaport/")
    assert main(["seed", "--items", str(items)]) == 2  # a setting to fix, as any other
    _, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "is not a valid Mongo URI" in err
    assert "Traceback" not in err and "pw-secret-66" not in err
