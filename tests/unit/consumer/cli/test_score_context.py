"""``stockwatch score`` carries the input's other fields and the model's links, as ``consume`` does."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.cli import main
from consumer.wire.context import REPORT_FILE
from tests.schemas import validate_all

UNKNOWN = {"warehouse_id": "WH-7", "supplier": "acme"}


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))


def snapshot(path: Path) -> Path:
    rng = random.Random(7)
    rows = []
    for i in range(300):
        hi = rng.randint(50, 200)
        rows.append({"item_id": f"sku-{i}", "category": "tv" if i % 2 else "bolts", "min_stock_level": hi // 5,
                     "stock_quantity": rng.randint(hi // 4, hi), "max_stock_level": hi,
                     "price": round(rng.uniform(5, 50), 2)})  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("detector", ["seed", "default"])
def test_score_lines_carry_attributes_and_links(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, detector: str
) -> None:
    items, models = snapshot(tmp_path / "items.jsonl"), tmp_path / "models"
    assert main(["train", "--items", str(items), "--model-dir", str(models), "--detector", detector]) == 0
    version = json.loads(capsys.readouterr().out)["version"]
    (models / version / REPORT_FILE).write_bytes(b"png")  # as the retrain worker leaves it
    bad = {
        "item_id": "sku-1",
        "stock_quantity": 999_999,
        "price": -5.0,
        "occurred_at": "2026-12-01T10:00:00Z",
    }
    (tmp_path / "in.jsonl").write_text(json.dumps(bad | UNKNOWN | {"category": "tv"}) + "\n")
    monkeypatch.setenv("STOCKWATCH_REPORT_URL_TEMPLATE", "https://models.example/{version}/report.png")
    argv = ["score", "--model-dir", str(models), "--input", str(tmp_path / "in.jsonl")]
    assert main(argv + (["--baseline", str(items)] if detector == "default" else [])) == 0
    (line,) = validate_all("score-line", [orjson.loads(x) for x in capsys.readouterr().out.splitlines()])
    assert line["is_anomaly"] is True
    # the seed reads neither occurred_at nor the peer group: they are attributes there
    read_by_seed: dict[str, Any] = {"occurred_at": bad["occurred_at"], "category": "tv"}
    assert line["item"]["attributes"] == UNKNOWN | (read_by_seed if detector == "seed" else {})
    assert line["item"]["attributes_truncated"] is False
    assert line["links"] == {
        "model": (models / version).resolve().as_uri() + "/",
        "report": f"https://models.example/{version}/report.png",
    }
