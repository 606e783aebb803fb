"""The chaos runner's progress lines name each row's scenario and variant and give its own seconds."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos.common import Result, split_seconds


def test_each_row_of_a_scenario_gets_its_own_seconds_and_names_its_variant() -> None:
    rows = [
        Result("poison: 5 MB gzip update", "at-least-once, kafka-python", started=100.5),
        Result("poison: 5 MB gzip update", "exactly-once, kafka-python", started=117.0),
        Result("poison: audit on, Mongo down", "at-least-once, kafka-python", started=140.0),
    ]
    rows[2].fail("an anomaly was lost")
    split_seconds(rows, 100.0, 150.0)
    assert [r.seconds for r in rows] == [17.0, 23.0, 10.0]
    assert [r.progress() for r in rows] == [
        "chaos: poison: 5 MB gzip update [at-least-once, kafka-python]: PASS (17 s)",
        "chaos: poison: 5 MB gzip update [exactly-once, kafka-python]: PASS (23 s)",
        "chaos: poison: audit on, Mongo down [at-least-once, kafka-python]: FAIL (10 s)",
    ]


def test_a_row_the_scenario_timed_itself_keeps_its_seconds() -> None:
    rows = [Result("a", "x", started=0.0, seconds=3.0), Result("b", "", started=5.0)]
    split_seconds(rows, 0.0, 9.0)
    assert [r.seconds for r in rows] == [3.0, 4.0]
    assert rows[1].progress() == "chaos: b: PASS (4 s)"


def test_a_scenario_that_raises_is_one_failed_line_and_its_stack_goes_to_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import chaos.__main__ as chaos_main

    monkeypatch.setattr(chaos_main, "LOG_DIR", tmp_path / "logs")
    monkeypatch.setattr(chaos_main, "REPO", tmp_path)
    ctx = SimpleNamespace(prefix="chaos-1", stop_all=lambda: None)

    def broken(_ctx: object) -> list[Result]:
        raise RuntimeError("broker gone")

    [got] = chaos_main.run_scenario("broker kill -9 [x]", broken, ctx)  # type: ignore[arg-type]
    assert not got.ok and got.checks[0].startswith("FAILED: RuntimeError: broker gone (stack in logs/")
    [stack] = (tmp_path / "logs").glob("chaos-1-broker-kill-9-x.traceback.txt")
    assert "Traceback" in stack.read_text() and "Traceback" not in capsys.readouterr().err
