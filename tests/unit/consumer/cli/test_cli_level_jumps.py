"""``stockwatch score --baseline``: a price every report agrees on settles; same-second sales are movement."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.cli import main
from scripts.inventory_sim import SimConfig, write


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))


def jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_score_settles_a_level_jump_and_applies_same_second_sales_in_order(tmp_path, capsys) -> None:
    write(tmp_path / "sim", SimConfig(seed=405, n_items=200, days=2, error_rate=0.01))
    items = [json.loads(line) for line in (tmp_path / "sim" / "items.jsonl").read_text().splitlines()]
    models = str(tmp_path / "models")
    assert main(["train", "--items", str(tmp_path / "sim" / "items.jsonl"), "--model-dir", models]) == 0
    x, y = [d for d in items if d["stock_quantity"] >= 10 and d["price"] >= 1][:2]  # two stocked items
    # Mongo holds a tenth of x's price (a decimal shift); every report of x carries the true one
    baseline = jsonl(
        tmp_path / "s.jsonl", [dict(d, price=round(d["price"] / 10, 4)) if d is x else d for d in items]
    )
    full = {k: x[k] for k in ("item_id", "min_stock_level", "max_stock_level", "price")}
    stream = [dict(full, stock_quantity=x["stock_quantity"] - k, occurred_at=f"2026-03-02T{8 + k:02d}:00:00Z")
              for k in range(6)]  # fmt: skip
    # a point-of-sale feed stamps to the second: three sales of y at one time, then one later
    stream += [{"item_id": y["item_id"], "stock_quantity": y["stock_quantity"] - k,
                "occurred_at": "2026-03-02T12:00:05Z" if k < 4 else "2026-03-02T13:00:00Z"} for k in range(1, 5)]  # fmt: skip
    capsys.readouterr()
    code = main(
        [
            "score",
            "--model-dir",
            models,
            "--baseline",
            baseline,
            "--input",
            jsonl(tmp_path / "e.jsonl", stream),
        ]
    )
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and len(lines) == 10
    assert [line["is_anomaly"] for line in lines[:6]] == [True, True, True, False, False, False]
    assert lines[0]["rules"] == ["price_jump_9x"]
    assert [line["is_anomaly"] for line in lines[6:]] == [False] * 4
