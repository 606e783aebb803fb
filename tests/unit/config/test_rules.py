"""The rules table of the settings: ``[[rules]]`` in the TOML file, one line per mistake."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from config import SettingsError, load_settings
from config.rules import RULE_VARIABLES
from config.sources import DEFAULT_CONFIG_FILE
from detection.rules import DEFAULT_RULES, RuleSet
from detection.rules import RULE_VARIABLES as DETECTOR_VARIABLES


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return caught.value.problems


def toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return str(path)


def test_the_shipped_table_is_the_detectors_built_in_table() -> None:
    shipped = tomllib.loads(DEFAULT_CONFIG_FILE.read_text())["rules"]
    assert RuleSet(shipped).table() == RuleSet(DEFAULT_RULES).table()
    assert load_settings().models.rule_table() == RuleSet(DEFAULT_RULES).table()


def test_config_knows_the_variables_the_detector_compiles() -> None:
    assert RULE_VARIABLES == DETECTOR_VARIABLES


def test_a_table_in_the_file_replaces_the_defaults_and_disabled_rules_are_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = toml(tmp_path, '[[rules]]\nname = "big"\nwhen = "stock > 3 * prev_max"\nseverity = 70\n'
                          '[[rules]]\nname = "off"\nwhen = "stock < 0"\nenabled = false\n')  # fmt: skip
    monkeypatch.setenv("STOCKWATCH_CONFIG", path)
    table = load_settings().models.rule_table()
    assert table == [{"name": "big", "kind": "data_quality", "when": "stock > 3 * prev_max",
                      "says": "stock > 3 * prev_max", "severity": 70.0}]  # fmt: skip
    assert RuleSet(table or []).names == ("big",)


def test_a_file_without_rules_keeps_the_built_in_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKWATCH_CONFIG", toml(tmp_path, 'group_id = "g"\n'))
    assert load_settings().models.rule_table() is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[rules]]\nname = "a"\nwhen = "stok < 0"\n', "rule 1 ('a'), when: unknown variable 'stok'"),
        ('[[rules]]\nname = "a"\nwhen = "stock <> 0"\n', "rule 1 ('a'), when: cannot read"),
        ('[[rules]]\nname = "a"\nwhen = "stock < 0"\nseverity = 101\n', "rule 1 ('a'), severity:"),
        ('[[rules]]\nname = "a"\nwhen = "stock < 0"\nsevere = 1\n', "rule 1 ('a'), severe: Extra inputs"),
        ('[[rules]]\nname = "A b"\nwhen = "stock < 0"\n', "rule 1 ('A b'), name:"),
        ('[[rules]]\nname = "a"\n', "rule 1 ('a'), when: Field required"),
        ('[[rules]]\nname = "a"\nwhen = "stock < 0"\n[[rules]]\nname = "a"\nwhen = "min < 0"\n',
         "rule name 'a' appears twice"),
        ("rules = 5\n", "must be a list of rules"),
    ],
)  # fmt: skip
def test_an_invalid_table_is_one_line_naming_the_file_and_the_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    path = toml(tmp_path, text)
    (line,) = problems(monkeypatch, STOCKWATCH_CONFIG=path)
    assert line.startswith(f"rules in {path}") and expected in line and "\n" not in line


def test_the_environment_takes_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKWATCH_RULES", json.dumps([{"name": "neg", "when": "stock < 0"}]))
    assert [r["name"] for r in load_settings().models.rule_table() or []] == ["neg"]
    monkeypatch.setenv("STOCKWATCH_RULES", json.dumps([{"name": "neg", "when": "stock <"}]))
    (line,) = problems(monkeypatch)
    assert line.startswith("STOCKWATCH_RULES, rule 1, when: cannot read")


def test_more_than_32_enabled_rules_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = [{"name": f"r{k}", "when": f"stock > {k}"} for k in range(33)]
    (line,) = problems(monkeypatch, STOCKWATCH_RULES=json.dumps(rules))
    assert "at most 32 enabled rules" in line
