"""`stockwatch feedback` refuses an id StockWatch never makes, in one line, before any broker is asked."""

from __future__ import annotations

import os

import pytest

from consumer.cli import main
from consumer.cli.feedback import check_event_id
from consumer.wire.episode_events import episode_id
from consumer.wire.events import anomaly_id


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))
    monkeypatch.setenv("STOCKWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # without the check: exit 1, not 2


@pytest.mark.parametrize(
    "given",
    ["ep-1", "", "E" * 32, "a" * 31, "a" * 33, "g" * 32, " " + "a" * 31, "x" * 500],
)
def test_an_id_of_another_form_is_refused_naming_the_expected_form(capsys, given):
    assert main(["feedback", given, "confirmed"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("stockwatch feedback: EPISODE_ID must be") and "32 lowercase hex digits" in err
    assert len(err) < 200  # a long id is shortened, not echoed whole


@pytest.mark.parametrize(
    "made", [episode_id("inventory.updates", 0, 7, "sku-1"), anomaly_id("inventory.updates", 0, 7, "v1")]
)
def test_the_ids_stockwatch_makes_pass_the_check(made):
    check_event_id(made)  # no FeedbackError: cmd_feedback goes on to the broker
