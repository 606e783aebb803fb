"""What `stockwatch config`, `train` and `consume` say about the rules table: the built-in rules
when none is set, "no rules" plainly (a WARNING at start-up) when it is empty, and a narrow table."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from config import load_settings
from consumer.cli import main
from consumer.cli.config import MAX_CELL, no_rules_warning
from detection import ModelStore, parse_updates, train_detector
from detection.rules import DEFAULT_RULES
from scripts.inventory_sim import SimConfig, simulate, write


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))


def table(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """The VALUE cell of each row of `stockwatch config`, cut where the header puts the columns."""
    assert main(["config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start, end = lines[0].index("VALUE"), lines[0].index("SOURCE")
    assert end - start - 2 <= MAX_CELL  # no value widens the table beyond one cell
    return {line.split()[0]: line[start:end].strip() for line in lines[1:]}


def test_a_file_without_rules_shows_that_the_built_in_rules_apply(capsys: pytest.CaptureFixture[str]) -> None:
    assert table(capsys)["rules"] == f"{len(DEFAULT_RULES)} built-in rules (no [[rules]] table set)"


def test_an_empty_rules_table_says_no_rules(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STOCKWATCH_RULES", "[]")
    assert table(capsys)["rules"] == "no rules: the table is empty, nothing is checked"
    warning = no_rules_warning(load_settings())
    assert warning is not None and warning.startswith(
        "no rules: the rules table (env STOCKWATCH_RULES) is empty"
    )
    disabled = [{"name": "neg", "when": "stock < 0", "enabled": False}]
    monkeypatch.setenv("STOCKWATCH_RULES", json.dumps(disabled))  # every rule disabled: the same
    assert table(capsys)["rules"] == "no rules: the table is empty (1 disabled), nothing is checked"
    assert no_rules_warning(load_settings()) is not None
    monkeypatch.delenv("STOCKWATCH_RULES")
    assert no_rules_warning(load_settings()) is None


def test_a_long_rules_table_is_a_count_and_the_names_that_fit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = [{"name": str(r["name"]), "when": str(r["when"])} for r in DEFAULT_RULES]
    monkeypatch.setenv(
        "STOCKWATCH_RULES", json.dumps([*rules, {"name": "off", "when": "min < 0", "enabled": False}])
    )
    cell = table(capsys)["rules"]
    assert cell.startswith(f"{len(rules)} rules, 1 disabled: {rules[0]['name']}, {rules[1]['name']}")
    shown = cell.split(": ", 1)[1].rsplit(" (+", 1)
    assert len(shown[0].split(", ")) + int(shown[1].removesuffix(" more)")) == len(rules)
    assert main(["config", "--json"]) == 0  # the JSON keeps every name
    assert json.loads(capsys.readouterr().out)["rules"]["value"].count(", ") == len(rules)


def test_train_warns_at_start_up_when_the_table_is_empty(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write(tmp_path, SimConfig(seed=3, n_items=80, days=1))
    argv = ["train", "--items", str(tmp_path / "items.jsonl"), "--model-dir", str(tmp_path / "m"), "--detector", "default"]  # fmt: skip
    for rules, expected in ((None, []), ("[]", ["WARNING"])):
        if rules is not None:
            monkeypatch.setenv("STOCKWATCH_RULES", rules)
        assert main(argv) == 0
        logs = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [log["level"] for log in logs if log["msg"].startswith("no rules:")] == expected
    assert ModelStore(tmp_path / "m").load_any().rules.names == ()  # type: ignore[union-attr]


def test_eval_of_the_default_detector_warns_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write(tmp_path, SimConfig(seed=4, n_items=80, days=2, error_rate=0.05))
    files = ["--items", str(tmp_path / "items.jsonl"), "--events", str(tmp_path / "events.jsonl"),
             "--labels", str(tmp_path / "labels.json")]  # fmt: skip
    monkeypatch.setenv("STOCKWATCH_RULES", "[]")
    for detector, warned in (("seed", False), ("default", True)):
        assert main(["eval", *files, "--detector", detector]) == 0
        err = capsys.readouterr().err
        assert ('"level":"WARNING"' in err and "no rules: the rules table" in err) is warned, err


def test_consume_warns_when_it_loads_a_model_that_checks_no_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from consumer.scoring.model_watcher import ModelWatcher

    batch = parse_updates(simulate(SimConfig(seed=5, n_items=80, days=1))[0])[0]
    store = ModelStore(tmp_path)
    caplog.set_level(logging.INFO, logger="consumer.scoring.model_watcher")
    for rules, warned in ((DEFAULT_RULES, False), ((), True)):
        version = store.publish(train_detector(batch, rules=rules))
        caplog.clear()
        assert ModelWatcher(store).check()
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert said == (
            [f"no rules: model {version} was trained with an empty rules table and checks none"]
            if warned
            else []
        )
