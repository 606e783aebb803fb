"""``train --detector default``, ``score --baseline`` (per-item state, in order) and ``eval``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import orjson
import pytest

from config.rules import RULE_VARIABLES
from consumer.cli import main
from detection import ChangeDetector, ModelStore, parse_updates
from scripts.inventory_sim import SimConfig, write
from tests.schemas import validate, validate_all


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    write(out, SimConfig(seed=404, n_items=250, days=6, error_rate=0.03, new_item_share=0.05))
    return out


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_default_then_score_with_baseline_keeps_state_in_order(tmp_path, capsys, sim) -> None:
    models = str(tmp_path / "models")
    code, out, _ = run(capsys, "train", "--items", str(sim / "items.jsonl"), "--model-dir", models,
                       "--detector", "default", "--alert-budget-per-1000", "1")  # fmt: skip
    summary = validate("train-summary", json.loads(out))
    assert code == 0 and summary["detector"] == "default" and summary["alert_budget_per_1000"] == 1.0
    assert summary["anomaly_rate"] == pytest.approx(1.0 / 1000, rel=0.5)  # measured, not the setting echoed
    assert "contamination" not in summary["params"]  # the budget sets the threshold, not a contamination
    code, out, _ = run(capsys, "models", "list", "--model-dir", models, "--json")
    assert [row["detector"] for row in validate("models-list", json.loads(out))] == ["default"]
    code, out, _ = run(capsys, "models", "show", "--model-dir", models)
    shown = validate("models-show", json.loads(out))
    assert shown["alert_budget_per_1000"] == 1.0 and "contamination" not in shown["params"]

    events = (sim / "events.jsonl").read_bytes().splitlines()
    extra = [b'{"item_id": "brand-new", "stock_quantity": 5}', b"not json"]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(events + extra) + b"\n")
    code, out, err = run(capsys, "score", "--model-dir", models, "--baseline", str(sim / "items.jsonl"),
                         "--input", str(tmp_path / "in.jsonl"), "--chunk-size", "700")  # fmt: skip
    lines = validate_all("score-line", [orjson.loads(line) for line in out.splitlines()])
    assert code == 1  # two rejections
    assert f"line {len(events) + 1}: rejected: missing_field: min_stock_level" in err
    assert f"line {len(events) + 2}: rejected: invalid JSON" in err
    assert [line["source"]["offset"] for line in lines] == list(range(1, len(events) + 1))
    flagged = [line for line in lines if line["is_anomaly"]]
    assert flagged and all(line["kind"] in ("data_quality", "model") for line in flagged)
    assert all(line["severity_score"] >= 50 for line in flagged)
    assert any(line["rules"] for line in flagged) and all(
        "price_vs_peers" in line["features"] for line in lines
    )

    # the same decisions as the detector deciding the whole stream in one batch, in process
    detector = ModelStore(Path(models)).load_any()
    assert isinstance(detector, ChangeDetector)
    snapshot = parse_updates([json.loads(line) for line in (sim / "items.jsonl").read_text().splitlines()])[0]
    decisions, _ = detector.decide_batch(
        detector.baseline(snapshot), parse_updates(map(orjson.loads, events))[0]
    )
    np.testing.assert_array_equal([line["is_anomaly"] for line in lines], decisions.is_anomaly)


def test_without_a_baseline_partial_updates_of_unseen_items_are_rejected(tmp_path, capsys, sim) -> None:
    models = str(tmp_path / "models")
    assert run(capsys, "train", "--items", str(sim / "items.jsonl"), "--model-dir", models, "--detector", "default")[0] == 0  # fmt: skip
    events = (sim / "events.jsonl").read_bytes().splitlines()[:300]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(events) + b"\n")
    code, out, err = run(capsys, "score", "--model-dir", models, "--input", str(tmp_path / "in.jsonl"))
    seen: set[str] = set()
    unseen_partial = 0
    for doc in map(orjson.loads, events):  # an item is known once one of its updates was complete
        if "min_stock_level" in doc and "price" in doc:
            seen.add(doc["item_id"])
        elif doc["item_id"] not in seen:
            unseen_partial += 1
    assert code == 1 and unseen_partial > 0 and err.count("rejected: missing_field") == unseen_partial
    assert len(out.splitlines()) == len(events) - unseen_partial


def test_the_detector_setting_chooses_what_train_fits(tmp_path, capsys, sim, monkeypatch) -> None:
    monkeypatch.delenv("STOCKWATCH_DETECTOR", raising=False)
    monkeypatch.setenv("STOCKWATCH_ALERT_BUDGET_PER_1000", "2")  # the retrain worker's budget too
    code, out, _ = run(  # nothing set: the default detector is the default
        capsys, "train", "--items", str(sim / "items.jsonl"), "--model-dir", str(tmp_path / "m")
    )
    assert code == 0 and json.loads(out)["detector"] == "default"
    assert json.loads(out)["alert_budget_per_1000"] == 2.0
    assert ModelStore(tmp_path / "m").versions()[-1].detector == "default"
    monkeypatch.setenv("STOCKWATCH_DETECTOR", "seed")
    code, out, _ = run(
        capsys, "train", "--items", str(sim / "items.jsonl"), "--model-dir", str(tmp_path / "m")
    )
    assert code == 0 and ModelStore(tmp_path / "m").versions()[-1].detector == "seed"
    code, _, err = run(capsys, "train", "--items", str(sim / "items.jsonl"), "--model-dir", str(tmp_path / "m"),
                       "--detector", "default", "--threshold", "0.1")  # fmt: skip
    assert code == 2 and "--threshold applies to --detector seed" in err
    code, _, err = run(capsys, "train", "--items", str(sim / "items.jsonl"), "--model-dir", str(tmp_path / "m"),
                       "--detector", "seed", "--alert-budget-per-1000", "1")  # fmt: skip
    assert code == 2 and "applies to --detector default only" in err


def test_eval_prints_both_detectors_and_json_that_fits_its_schema(capsys, sim) -> None:
    files = ["--items", str(sim / "items.jsonl"), "--events", str(sim / "events.jsonl"),
             "--labels", str(sim / "labels.json")]  # fmt: skip
    code, out, _ = run(capsys, "eval", *files)
    assert code == 0 and out.splitlines()[0].split()[1:] == ["seed", "default"]
    code, out, _ = run(capsys, "eval", *files, "--json")
    report = validate("eval-report", json.loads(out))
    assert code == 0 and set(report) == {"seed", "default"}
    assert report["default"]["average_precision"] > report["seed"]["average_precision"]


def test_eval_refuses_labels_that_name_no_event(tmp_path, capsys, sim) -> None:
    (tmp_path / "labels.json").write_text(json.dumps({"nope": "price_x10"}))
    code, _, err = run(capsys, "eval", "--items", str(sim / "items.jsonl"), "--events", str(sim / "events.jsonl"),
                       "--labels", str(tmp_path / "labels.json"))  # fmt: skip
    assert code == 2 and "need both errors and normal events" in err
    (tmp_path / "labels.json").write_text("[1, 2]")
    code, _, err = run(capsys, "eval", "--items", str(sim / "items.jsonl"), "--events", str(sim / "events.jsonl"),
                       "--labels", str(tmp_path / "labels.json"))  # fmt: skip
    assert code == 2 and "expected a JSON object" in err


@pytest.mark.parametrize("budget", ["600", "0", "-1", "nan"])
def test_eval_refuses_an_unusable_alert_budget_in_one_line(capsys, sim, budget: str) -> None:
    code, out, err = run(capsys, "eval", "--items", str(sim / "items.jsonl"), "--events", str(sim / "events.jsonl"),
                         "--labels", str(sim / "labels.json"), f"--alert-budget-per-1000={budget}")  # fmt: skip
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"stockwatch eval: --alert-budget-per-1000 must be in (0, 500], got {float(budget)}"
    ]


def test_train_binds_the_configured_rules_into_the_model(tmp_path, capsys, sim, monkeypatch) -> None:
    config = tmp_path / "rules.toml"
    config.write_text('[[rules]]\nname = "huge_stock"\nwhen = "stock > 5 * prev_max"\nseverity = 90\n'
                      '[[rules]]\nname = "off"\nwhen = "stock < 0"\nenabled = false\n')  # fmt: skip
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(config))
    models = str(tmp_path / "m")
    code, _, _ = run(capsys, "train", "--items", str(sim / "items.jsonl"), "--model-dir", models,
                     "--detector", "default")  # fmt: skip
    assert code == 0
    code, out, _ = run(capsys, "models", "show", "--model-dir", models)
    shown = validate("models-show", json.loads(out))
    assert [(r["name"], r["severity"]) for r in shown["rules"]] == [("huge_stock", 90.0)]
    # the model carries its table: scoring follows it whatever the file says later
    config.write_text('[[rules]]\nname = "other"\nwhen = "stock < 0"\n')
    model = ModelStore(Path(models)).load_any()
    assert isinstance(model, ChangeDetector) and model.rules.names == ("huge_stock",)


def test_an_invalid_rules_table_is_one_line_not_a_traceback(tmp_path, capsys, sim, monkeypatch) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[rules]]\nname = "neg"\nwhen = "stock < zero"\n')
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(config))
    code, out, err = run(capsys, "train", "--items", str(sim / "items.jsonl"), "--model-dir",
                         str(tmp_path / "m"), "--detector", "default")  # fmt: skip
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"stockwatch: rules in {config}, rule 1 ('neg'), when: unknown variable 'zero' "
        f"(known: {', '.join(RULE_VARIABLES)})"
    ]


def test_score_rejects_a_far_future_update_and_decides_the_rest_as_without_it(tmp_path, capsys, sim) -> None:
    models = str(tmp_path / "models")
    assert run(capsys, "train", "--items", str(sim / "items.jsonl"), "--model-dir", models, "--detector", "default")[0] == 0  # fmt: skip
    events = (sim / "events.jsonl").read_bytes().splitlines()[:400]
    first = orjson.loads(events[0])
    assert "occurred_at" in first
    poison = orjson.dumps(first | {"event_id": "from-2036", "occurred_at": "2036-01-01T00:00:00Z"})
    results = []
    for name, lines in (("clean", events), ("poisoned", [events[0], poison, *events[1:]])):
        (tmp_path / f"{name}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        code, out, err = run(capsys, "score", "--model-dir", models, "--baseline", str(sim / "items.jsonl"),
                             "--input", str(tmp_path / f"{name}.jsonl"), "--chunk-size", "100")  # fmt: skip
        results.append((code, [orjson.loads(line) for line in out.splitlines()], err))
    (clean_code, clean, _), (code, poisoned, err) = results
    assert clean_code == 0 and code == 1
    assert "line 2: rejected: future_time: occurred_at 2036-01-01T00:00:00+00:00 is after" in err
    assert [line["event_id"] for line in poisoned] == [line["event_id"] for line in clean]
    assert [(line["is_anomaly"], line["score"], line.get("rules")) for line in poisoned] == [
        (line["is_anomaly"], line["score"], line.get("rules")) for line in clean
    ]


def test_score_baseline_items_stamped_years_ahead_start_with_no_time(tmp_path, capsys, sim) -> None:
    """As consume's inventory seeds: the numbers are kept, the clock is not (a note on stderr)."""
    models = str(tmp_path / "models")
    assert run(capsys, "train", "--items", str(sim / "items.jsonl"), "--model-dir", models, "--detector", "default")[0] == 0  # fmt: skip
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join((sim / "events.jsonl").read_bytes().splitlines()[:300]) + b"\n")
    items = [orjson.loads(line) for line in (sim / "items.jsonl").read_bytes().splitlines()]
    results = []
    for name, at in (("untimed", None), ("ahead", "2036-01-01T00:00:00Z")):
        lines = [
            {k: v for k, v in d.items() if k != "occurred_at"} | ({"occurred_at": at} if at else {})
            for d in items
        ]
        (tmp_path / f"{name}.jsonl").write_bytes(b"\n".join(map(orjson.dumps, lines)) + b"\n")
        code, out, err = run(capsys, "score", "--model-dir", models, "--baseline", str(tmp_path / f"{name}.jsonl"),
                             "--input", str(events))  # fmt: skip
        results.append((code, [orjson.loads(line) for line in out.splitlines()], err))
    (untimed_code, untimed, _), (code, ahead, err) = results
    assert untimed_code == code == 0
    assert (
        f"baseline: {len(items)} item(s) stamped more than future_skew_s ahead start with no occurred_at"
        in err
    )
    assert [(d["event_id"], d["is_anomaly"], d["score"]) for d in ahead] == [
        (d["event_id"], d["is_anomaly"], d["score"]) for d in untimed
    ]


def test_score_says_which_baseline_lines_seed_nothing(tmp_path, capsys, sim) -> None:
    models = str(tmp_path / "models")
    assert run(capsys, "train", "--items", str(sim / "items.jsonl"), "--model-dir", models, "--detector", "default")[0] == 0  # fmt: skip
    items = (sim / "items.jsonl").read_bytes().splitlines()
    first, second = orjson.loads(items[0]), orjson.loads(items[1])
    lacking = {k: v for k, v in second.items() if k != "price"}
    baseline = tmp_path / "baseline.jsonl"
    baseline.write_bytes(b"\n".join([*items[2:], items[0], orjson.dumps(first | {"stock_quantity": 1}), orjson.dumps(lacking)]) + b"\n")  # fmt: skip
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join((sim / "events.jsonl").read_bytes().splitlines()[:50]) + b"\n")
    code, _, err = run(
        capsys, "score", "--model-dir", models, "--baseline", str(baseline), "--input", str(events)
    )
    assert code in (0, 1)
    assert "baseline: 1 line(s) lack one of stock_quantity, min_stock_level, max_stock_level, price" in err
    assert "baseline: 1 line(s) repeat an item_id: the last line of each item is its state" in err
