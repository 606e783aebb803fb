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
