"""The CLI against hostile paths: a planted model-store lock (the input-as-output checks live here too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import detection
from detection import ModelStore, parse_item, train_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> tuple[Path, str]:
    rng = np.random.default_rng(3)
    rows = [{"item_id": f"sku-{i}", "stock_quantity": float(rng.integers(50, 200)), "min_stock_level": 50,
             "max_stock_level": 200, "price": float(rng.uniform(5, 20))} for i in range(100)]  # fmt: skip
    root = tmp_path_factory.mktemp("models")
    return root, ModelStore(root).publish(train_model([parse_item(r) for r in rows]))


def cli(tmp_path: Path, *argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")}
    (tmp_path / "empty.toml").touch()
    env["STOCKWATCH_CONFIG"] = str(tmp_path / "empty.toml")
    env["PYTHONPATH"] = str(Path(detection.__file__).parents[1])
    return subprocess.run([sys.executable, "-m", "consumer.cli", *argv], input=stdin, env=env,
                          capture_output=True, timeout=120, check=False)  # fmt: skip


@pytest.mark.parametrize("kind", ["fifo", "dir"])
def test_models_rollback_refuses_a_planted_lock_in_one_line(tmp_path, model_dir, kind):
    root, version = model_dir
    lock = root / ".lock"
    lock.unlink(missing_ok=True)
    os.mkfifo(lock) if kind == "fifo" else lock.mkdir()
    try:
        done = cli(tmp_path, "models", "rollback", version, "--model-dir", str(root))
    finally:
        lock.unlink() if kind == "fifo" else lock.rmdir()
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"stockwatch models rollback: {lock} is not a regular file; remove it"
    ]


ITEM = (
    b'{"item_id": "a", "stock_quantity": 120, "min_stock_level": 50, "max_stock_level": 200, "price": 10}\n'
)


@pytest.fixture
def in_process(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--input", "{f}", "--output", "{f}"], "--output {f} is the same file as --input"),
        (["--input", "{f}", "--alerts", "{f}"], "--alerts {f} is the same file as --input"),
        (["--input", "{link}", "--output", "{f}"], "--output {f} is the same file as --input"),
        (
            ["--input", "-", "--baseline", "{f}", "--output", "{f}"],
            "--output {f} is the same file as --baseline",
        ),
    ],
)
def test_score_refuses_to_overwrite_an_input(tmp_path, capsys, in_process, model_dir, flags, message):
    from consumer.cli import main

    f, link = tmp_path / "items.jsonl", tmp_path / "link.jsonl"
    f.write_bytes(ITEM)
    link.symlink_to(f)
    argv = [a.format(f=f, link=link) for a in flags]
    code = main(["score", "--model-dir", str(model_dir[0]), *argv])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and f.read_bytes() == ITEM
    assert err == [f"stockwatch score: {message.format(f=f)}; refusing to overwrite it"]


def test_score_refuses_one_file_as_both_outputs(tmp_path, capsys, in_process, model_dir):
    from consumer.cli import main

    (tmp_path / "items.jsonl").write_bytes(ITEM)
    out = tmp_path / "out.jsonl"
    argv = ["--input", str(tmp_path / "items.jsonl"), "--output", str(out), "--alerts", str(out)]
    code = main(["score", "--model-dir", str(model_dir[0]), *argv])
    assert code == 2 and not out.exists()
    assert "--alerts" in capsys.readouterr().err


def test_score_with_a_missing_input_creates_no_output_file(tmp_path, capsys, in_process, model_dir):
    from consumer.cli import main

    alerts, out = tmp_path / "alerts.jsonl", tmp_path / "out.jsonl"
    argv = ["--input", str(tmp_path / "typo.jsonl"), "--output", str(out), "--alerts", str(alerts)]
    code = main(["score", "--model-dir", str(model_dir[0]), *argv])
    assert code == 2 and "typo.jsonl" in capsys.readouterr().err
    assert not alerts.exists() and not out.exists()


def test_score_refuses_an_output_that_is_its_redirected_stdin(tmp_path, model_dir):
    f = tmp_path / "items.jsonl"
    f.write_bytes(ITEM)
    with f.open("rb") as stdin:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")}
        (tmp_path / "empty.toml").touch()
        env |= {
            "STOCKWATCH_CONFIG": str(tmp_path / "empty.toml"),
            "PYTHONPATH": str(Path(detection.__file__).parents[1]),
        }
        done = subprocess.run([sys.executable, "-m", "consumer.cli", "score", "--model-dir", str(model_dir[0]),
                               "--output", str(f)], stdin=stdin, env=env, capture_output=True, timeout=120,
                              check=False)  # fmt: skip
    assert done.returncode == 2 and f.read_bytes() == ITEM
    assert done.stderr.decode().splitlines() == [
        f"stockwatch score: --output {f} is the same file as --input; refusing to overwrite it"
    ]
