"""A failing benchmark is one line on the terminal; its stack goes to a file under .bench/."""

from __future__ import annotations

from pathlib import Path

import pytest

import bench.__main__ as bench_main


def test_a_failing_benchmark_prints_one_line_and_writes_its_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_quick: bool, _results: dict[str, object]) -> None:
        raise RuntimeError("no broker")

    monkeypatch.setattr(bench_main, "OUT_DIR", tmp_path)
    monkeypatch.setitem(bench_main.RUNNERS, "state", broken)
    assert bench_main.main(["--only", "state"]) == 1
    out = capsys.readouterr()
    stack = tmp_path / "state.traceback.txt"
    assert f"bench: state failed: RuntimeError: no broker (stack in {stack})" in out.out
    assert "Traceback" not in out.out + out.err
    assert "Traceback" in stack.read_text()
