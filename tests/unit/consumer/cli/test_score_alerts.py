"""``stockwatch score --alerts``: what ``consume`` publishes to the anomaly topic, episodes included."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.cli import main
from tests.schemas import validate_all

VOLATILE = ("detected_at",)  # the time of scoring


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(snapshot file, model directory) of one default model, trained once for the module."""
    out = tmp_path_factory.mktemp("alerts")
    rng, rows = random.Random(11), []
    for i in range(300):
        hi = rng.randint(50, 200)
        rows.append({"item_id": f"sku-{i}", "category": "tv" if i % 2 else "bolts", "min_stock_level": hi // 5,
                     "stock_quantity": rng.randint(hi // 4, hi), "max_stock_level": hi,
                     "price": round(rng.uniform(5, 50), 2)})  # fmt: skip
    items = out / "items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in rows))
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("STOCKWATCH_")}
    try:
        argv = ["train", "--items", str(items), "--model-dir", str(out / "models"), "--detector", "default"]
        assert main(argv) == 0
    finally:
        os.environ.update(saved)
    return items, out / "models"


def episode_stream(item: str = "sku-1", normal_after: int = 3) -> list[dict[str, Any]]:
    """Normal, anomalous x3 (negative stock: a data-quality rule), normal x ``normal_after``; an
    unrelated item's normal updates between them."""
    at = iter(f"2026-12-01T10:{m:02d}:00Z" for m in range(60))
    docs = [{"item_id": item, "stock_quantity": 40, "occurred_at": next(at)}]
    docs += [{"item_id": item, "stock_quantity": -5 - k, "occurred_at": next(at)} for k in range(3)]
    for _ in range(normal_after):
        docs += [{"item_id": "sku-2", "stock_quantity": 30, "occurred_at": next(at)},
                 {"item_id": item, "stock_quantity": 40, "occurred_at": next(at)}]  # fmt: skip
    return [d | {"event_id": f"e{n}"} for n, d in enumerate(docs)]


def score(
    capsys: pytest.CaptureFixture[str], trained: tuple[Path, Path], tmp_path: Path, docs: list[dict[str, Any]],
    *flags: str,
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]], str]:  # fmt: skip
    """(exit, decision lines, alert lines, stderr) of ``score --baseline --alerts``."""
    items, models = trained
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    alerts = tmp_path / "alerts.jsonl"
    code = main(["score", "--model-dir", str(models), "--baseline", str(items), "--input",
                 str(tmp_path / "in.jsonl"), "--alerts", str(alerts), *flags])  # fmt: skip
    out, err = capsys.readouterr()
    lines = [orjson.loads(x) for x in out.splitlines()]
    return code, lines, [orjson.loads(x) for x in alerts.read_bytes().splitlines()], err


def test_an_episode_gives_one_open_and_one_resolved(tmp_path, capsys, trained) -> None:
    docs = episode_stream()
    code, lines, alerts, _ = score(capsys, trained, tmp_path, docs)
    assert code == 0 and len(lines) == len(docs)  # --output: one decision per update, as without --alerts
    assert [line["event_id"] for line in lines if line["is_anomaly"]] == ["e1", "e2", "e3"]
    opened, resolved = alerts
    validate_all("anomaly-topic-event", alerts)
    assert (opened["status"], opened["event_id"], opened["occurrences"]) == ("open", "e1", 1)
    assert (resolved["status"], resolved["event_id"]) == ("resolved", "e9")  # the third normal update
    assert resolved["episode_id"] == opened["episode_id"] and resolved["occurrences"] == 3
    assert (resolved["first_seen"], resolved["last_seen"]) == (
        "2026-12-01T10:01:00.000Z",
        "2026-12-01T10:03:00.000Z",
    )
    assert resolved["resolved_at"] == "2026-12-01T10:09:00.000Z" and resolved["duration_s"] == 480.0
    assert resolved["item"]["item_id"] == "sku-1" and not resolved["is_anomaly"]
    # the open event is the update's anomaly event plus the episode fields
    first = next(line for line in lines if line["event_id"] == "e1")
    assert {k: v for k, v in opened.items() if k in first and k not in VOLATILE} == {
        k: v for k, v in first.items() if k not in VOLATILE
    }


def test_episodes_span_chunks_and_follow_resolve_after(tmp_path, capsys, trained, monkeypatch) -> None:
    docs = episode_stream(normal_after=4)
    _, _, whole, _ = score(capsys, trained, tmp_path, docs)
    _, _, chunked, _ = score(capsys, trained, tmp_path, docs, "--chunk-size", "2")
    drop = {"detected_at"}
    assert [{k: v for k, v in a.items() if k not in drop} for a in chunked] == [
        {k: v for k, v in a.items() if k not in drop} for a in whole
    ]
    assert [a["status"] for a in whole] == ["open", "resolved"]
    monkeypatch.setenv("STOCKWATCH_RESOLVE_AFTER", "5")
    _, _, later, _ = score(capsys, trained, tmp_path, docs)
    assert [a["status"] for a in later] == ["open"]  # four normal updates do not resolve it


def test_every_update_writes_each_anomaly_event(tmp_path, capsys, trained, monkeypatch) -> None:
    docs = episode_stream()
    _, lines, alerts, _ = score(capsys, trained, tmp_path, docs, "--alert-mode", "every-update")
    assert alerts == [line for line in lines if line["is_anomaly"]] and len(alerts) == 3
    monkeypatch.setenv("STOCKWATCH_ALERT_MODE", "every-update")
    _, _, by_setting, _ = score(capsys, trained, tmp_path, docs)
    assert [a["event_id"] for a in by_setting] == ["e1", "e2", "e3"] and "status" not in by_setting[0]


def test_a_suppression_file_silences_the_episode(tmp_path, capsys, trained) -> None:
    docs = episode_stream()
    rows = [{"id": "ep-1", "item_id": "sku-1", "reason": None, "expires_at": "2999-01-01T00:00:00+00:00"},
            {"id": "ep-2", "item_id": "sku-1", "reason": None, "expires_at": "2000-01-01T00:00:00+00:00"}]  # fmt: skip
    supp = tmp_path / "supp.jsonl"
    supp.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows) + b'{"item_id": 1}\n[]\n')
    code, lines, alerts, err = score(capsys, trained, tmp_path, docs, "--suppressions", str(supp))
    assert code == 0 and alerts == [] and sum(line["is_anomaly"] for line in lines) == 3
    assert "line 3: not a suppression, skipped: missing field" in err
    assert "line 4: not a suppression, skipped: expected a JSON object, got list" in err
    assert "Error(" not in err  # a sentence, not a Python exception's repr
    supp.write_bytes(orjson.dumps(rows[1]) + b"\n")  # expired: history, not a rule
    _, _, alerts, _ = score(capsys, trained, tmp_path, docs, "--suppressions", str(supp))
    assert [a["status"] for a in alerts] == ["open", "resolved"]


def test_a_seed_model_writes_every_anomaly(tmp_path, capsys, trained) -> None:
    items, _ = trained
    models = tmp_path / "seed-models"
    assert main(["train", "--items", str(items), "--model-dir", str(models), "--detector", "seed"]) == 0
    capsys.readouterr()
    docs = [json.loads(line) for line in items.read_text().splitlines()][:60]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    alerts = tmp_path / "alerts.jsonl"
    argv = [
        "score",
        "--model-dir",
        str(models),
        "--input",
        str(tmp_path / "in.jsonl"),
        "--alerts",
        str(alerts),
    ]
    assert main(argv) == 0
    lines = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    flagged = [line for line in lines if line["is_anomaly"]]
    assert flagged and [orjson.loads(x) for x in alerts.read_bytes().splitlines()] == flagged


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--alert-mode", "episodes"], "--alert-mode applies to --alerts FILE only"),
        (["--suppressions", "x.jsonl"], "--suppressions applies to --alerts FILE only"),
        (["--alerts", "-"], "would interleave on stdout"),
    ],
)
def test_alert_flag_mistakes_are_usage_errors(tmp_path, capsys, trained, flags, says) -> None:
    _, models = trained
    assert main(["score", "--model-dir", str(models), "--input", "-", *flags]) == 2
    assert says in capsys.readouterr().err


def test_a_missing_suppression_file_is_one_line(tmp_path, capsys, trained) -> None:
    items, models = trained
    (tmp_path / "in.jsonl").write_text(json.dumps(episode_stream()[0]) + "\n")
    code = main(["score", "--model-dir", str(models), "--baseline", str(items), "--input", str(tmp_path / "in.jsonl"),
                 "--alerts", str(tmp_path / "a.jsonl"), "--suppressions", str(tmp_path / "none.jsonl")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "none.jsonl" in err and "Traceback" not in err
