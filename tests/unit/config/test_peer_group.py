"""``peer_group_field``: default category, ``""``/``none`` = no grouping, plain names only, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import Settings, SettingsError, load_settings
from config.peer_group import RESERVED_FIELDS, check_group_field
from consumer.cli import main
from detection.items import ITEM_INPUT_KEYS


def test_the_default_is_category_and_the_models_slice_carries_it() -> None:
    assert Settings().peer_group_field == "category"
    assert Settings(peer_group_field="warehouse_id").models.peer_group_field == "warehouse_id"


@pytest.mark.parametrize("value", ["", "none", "None", " NONE ", "  "])
def test_empty_or_none_means_no_peer_grouping(value: str) -> None:
    assert Settings(peer_group_field=value).models.peer_group_field == ""


@pytest.mark.parametrize("value", ["warehouse_id", "Category", "_shelf", "store-region", "x" * 64])
def test_plain_field_names_are_kept(value: str) -> None:
    assert check_group_field(value) == value


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("price", "reads as a number or an id"),
        ("item_id", "reads as a number or an id"),
        ("occurred_at", "reads as a number or an id"),
        ("min_stock", "reads as a number or an id"),
        ("location.aisle", "not a plain field name"),
        ("$where", "not a plain field name"),
        ("9lives", "not a plain field name"),
        ("two words", "not a plain field name"),
        ("x" * 65, "at most 64 characters"),
    ],
)
def test_what_cannot_be_a_peer_group_is_refused(value: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        Settings(peer_group_field=value)


def test_the_reserved_fields_are_what_the_parser_reads() -> None:
    """config may not import detection: this keeps its copy of the parser's keys honest."""
    assert frozenset((*ITEM_INPUT_KEYS, "occurred_at", "event_id")) == RESERVED_FIELDS


def test_an_invalid_value_in_the_environment_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))
    monkeypatch.setenv("STOCKWATCH_PEER_GROUP_FIELD", "stock_quantity")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.problems == [
        "STOCKWATCH_PEER_GROUP_FIELD: 'stock_quantity' is a field the detector reads as a number or an "
        "id, not a peer group (got 'stock_quantity')"
    ]


def test_the_toml_key_and_stockwatch_config_show_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "sw.toml"
    cfg.write_text('peer_group_field = "warehouse_id"\n')
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(cfg))
    assert main(["config", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["peer_group_field"]
    assert shown == {"value": "warehouse_id", "source": str(cfg), "env": "STOCKWATCH_PEER_GROUP_FIELD"}
    monkeypatch.setenv("STOCKWATCH_PEER_GROUP_FIELD", "none")
    assert main(["config"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("peer_group_field "))
    assert row.split() == ["peer_group_field", '""', "env", "STOCKWATCH_PEER_GROUP_FIELD"]
