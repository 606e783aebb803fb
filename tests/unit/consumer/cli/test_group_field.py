"""``train --group-field`` / ``peer_group_field``: the model records its peer group and decides by it.

The inventory here is priced by warehouse, not by category: ``bulk`` stocks items of ~1-4, ``premium``
items of ~200-900, and each category spans both. So a price that is ordinary for the category can be
far out of line for the warehouse: grouping by ``warehouse_id`` catches it, grouping by ``category``
cannot (the category's prices spread over both scales).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from consumer.cli import main
from detection import ChangeDetector, ModelStore
from tests.schemas import validate, validate_all

CATEGORIES = ("tools", "paint", "garden", "kitchen")
PRICES = {"bulk": (1.0, 4.0), "premium": (200.0, 900.0)}


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))


def item(item_id: str, warehouse: str | None, category: str, price: float, **more: Any) -> dict[str, Any]:
    doc = {"item_id": item_id, "category": category, "stock_quantity": 60, "min_stock_level": 20,
           "max_stock_level": 120, "price": round(price, 2)} | more  # fmt: skip
    return doc if warehouse is None else doc | {"warehouse_id": warehouse}


@pytest.fixture(scope="module")
def inventory(tmp_path_factory) -> Path:
    rng = np.random.default_rng(11)
    docs = []
    for k in range(400):
        warehouse = ("bulk", "premium")[k % 2]
        lo, hi = PRICES[warehouse]
        stock = int(rng.integers(25, 110))
        price = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        docs.append(item(f"i{k}", warehouse, CATEGORIES[(k // 2) % 4], price, stock_quantity=stock))
    path = tmp_path_factory.mktemp("groups") / "items.jsonl"
    path.write_bytes(b"".join(orjson.dumps(d, option=orjson.OPT_APPEND_NEWLINE) for d in docs))
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def train(capsys, items: Path, models: Path, *flags: str) -> dict[str, Any]:
    code, out, err = run(capsys, "train", "--items", str(items), "--model-dir", str(models),
                         "--detector", "default", *flags)  # fmt: skip
    assert code == 0, err
    return validate("train-summary", json.loads(out))


def score(capsys, models: Path, items: Path, updates: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    source = tmp_path / "updates.jsonl"
    source.write_bytes(b"".join(orjson.dumps(u, option=orjson.OPT_APPEND_NEWLINE) for u in updates))
    code, out, err = run(capsys, "score", "--model-dir", str(models), "--baseline", str(items),
                         "--input", str(source))  # fmt: skip
    assert code == 0, err
    lines = validate_all("score-line", [orjson.loads(line) for line in out.splitlines()])
    return {line["item_id"]: line for line in lines}


UPDATES = [  # new items (judged without history, as a first complete update) and a known one
    item("n-bulk-800", "bulk", "tools", 800.0, event_id="e1"),  # a premium price in the bulk warehouse
    item("n-premium-2", "premium", "paint", 2.0, event_id="e2"),  # a bulk price in the premium warehouse
    item("n-bulk-2", "bulk", "tools", 2.0, event_id="e3"),  # ordinary everywhere
    item("n-premium-500", "premium", "garden", 500.0, event_id="e4"),  # ordinary everywhere
    item("n-nowhere-800", None, "tools", 800.0, event_id="e5"),  # lacks the field: no peers
]


def test_group_field_warehouse_id_is_recorded_and_decides_where_category_cannot(
    tmp_path, capsys, inventory
) -> None:
    by_category, by_warehouse = tmp_path / "by-category", tmp_path / "by-warehouse"
    assert train(capsys, inventory, by_category)["group_field"] == "category"
    assert (
        train(capsys, inventory, by_warehouse, "--group-field", "warehouse_id")["group_field"]
        == "warehouse_id"
    )
    model = ModelStore(by_warehouse).load_any()
    assert isinstance(model, ChangeDetector) and model.metadata.group_field == "warehouse_id"
    assert set(model.metadata.peer_groups) == {"bulk", "premium"}
    code, out, _ = run(capsys, "models", "show", "--model-dir", str(by_warehouse))
    assert code == 0 and validate("models-show", json.loads(out))["group_field"] == "warehouse_id"

    cat = score(capsys, by_category, inventory, UPDATES, tmp_path)
    wh = score(capsys, by_warehouse, inventory, UPDATES, tmp_path)
    peers = {
        name: (cat[name]["features"]["price_vs_peers"], wh[name]["features"]["price_vs_peers"])
        for name in cat
    }
    assert peers["n-bulk-800"][1] > 5.0 and abs(peers["n-bulk-800"][0]) < 2.0
    assert peers["n-premium-2"][1] < -5.0 and abs(peers["n-premium-2"][0]) < 2.0
    assert peers["n-nowhere-800"][1] == 0.0  # no warehouse_id: no peers, as before grouping was configurable
    flagged = {name: (cat[name]["is_anomaly"], wh[name]["is_anomaly"]) for name in cat}
    assert flagged == {
        "n-bulk-800": (False, True),
        "n-premium-2": (False, True),
        "n-bulk-2": (False, False),
        "n-premium-500": (False, False),
        "n-nowhere-800": (False, False),
    }
    assert any("group" in reason for reason in wh["n-bulk-800"]["reasons"])  # says its peer group


def test_the_setting_is_the_default_of_the_flag_and_none_groups_nobody(
    tmp_path, capsys, inventory, monkeypatch
) -> None:
    monkeypatch.setenv("STOCKWATCH_PEER_GROUP_FIELD", "warehouse_id")
    assert train(capsys, inventory, tmp_path / "a")["group_field"] == "warehouse_id"
    assert train(capsys, inventory, tmp_path / "b", "--group-field", "none")["group_field"] == ""
    model = ModelStore(tmp_path / "b").load_any()
    assert isinstance(model, ChangeDetector) and model.metadata.peer_groups == {}
    lines = score(capsys, tmp_path / "b", inventory, UPDATES, tmp_path)
    assert {line["features"]["price_vs_peers"] for line in lines.values()} == {0.0}


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (("--group-field", "price"), "train: --group-field: 'price' is a field the detector reads as a number"),
        (("--group-field", "a.b"), "train: --group-field: 'a.b' is not a plain field name"),
        (("--detector", "seed", "--group-field", "warehouse_id"), "train: --group-field applies to --detector default only"),
    ],
)  # fmt: skip
def test_a_bad_group_field_is_one_line(tmp_path, capsys, inventory, flags, says) -> None:
    code, out, err = run(
        capsys, "train", "--items", str(inventory), "--model-dir", str(tmp_path / "m"), *flags
    )
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and lines[0].startswith(f"stockwatch {says}")
    assert not (tmp_path / "m").exists()


def test_eval_trains_with_the_group_field_and_refuses_a_bad_one(tmp_path, capsys) -> None:
    from scripts.inventory_sim import SimConfig, write

    write(tmp_path, SimConfig(seed=7, n_items=200, days=4, error_rate=0.03))
    files = ["eval", "--items", str(tmp_path / "items.jsonl"), "--events", str(tmp_path / "events.jsonl"),
             "--labels", str(tmp_path / "labels.json"), "--detector", "default", "--json"]  # fmt: skip
    reports = {}
    for field in ("category", "none"):
        code, out, err = run(capsys, *files, "--group-field", field)
        assert code == 0, err
        report = validate("eval-report", json.loads(out))["default"]
        reports[field] = {k: v for k, v in report.items() if k != "seconds"}
    # the same data and forest seed: only the peer grouping differs, and the scores with it
    assert reports["category"]["n_events"] == reports["none"]["n_events"]
    assert reports["category"] != reports["none"]
    code, out, err = run(capsys, *files, "--group-field", "event_id")
    assert code == 2 and out == "" and err.strip().startswith("stockwatch eval: --group-field: 'event_id' is")
