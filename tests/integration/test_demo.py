"""`make demo`'s own pass check, as a test: ``python -m scripts.demo --quick`` against the real stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_quick_demo_passes(kafka_bootstrap: str, mongo_uri: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "STOCKWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "STOCKWATCH_MONGO_URI": mongo_uri,
        "PYTHONPATH": str(REPO),  # the tree under test, for the demo and the services it starts
    }
    demo = subprocess.run(
        [sys.executable, "-m", "scripts.demo", "--quick", "--work", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    logs = "".join(
        f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((tmp_path / "logs").glob("*.log"))
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr + logs
    out = demo.stdout
    assert "== PASS" in out
    caught = re.search(r"planted anomalies caught: (\d+)/(\d+)", out)
    assert caught and caught[1] == caught[2] and int(caught[2]) > 0
    assert re.search(r"dead letters: (\d+)/\1\b", out)
    versions = re.search(r"model versions seen: ([^;]+);", out)
    assert versions and len(versions[1].split(", ")) == 2  # the trained model, then the retrained one
    assert versions[1].split(", ")[0].endswith("(default)")  # the default detector serves the stream
    assert re.search(r"data_quality +negative_stock", out) and re.search(r"critical +100\.0 +model ", out)
    assert "missing_field" in out  # an unknown item's incomplete update, with per-item state
    assert "--detector seed" in out  # how to get the seed's behaviour
    assert re.search(r"exit codes \{'retrain-worker': 0, 'consume': 0\}", out)
