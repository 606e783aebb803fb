"""A file a flag names that cannot be opened: one line naming the flag and the path, exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from consumer.cli import main
from detection import ModelStore, parse_updates, train_detector
from scripts.inventory_sim import SimConfig, write


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
    write(out, SimConfig(seed=5, n_items=60, days=1, error_rate=0.02, new_item_share=0.0))
    items = [orjson.loads(line) for line in (out / "items.jsonl").read_bytes().splitlines()]
    ModelStore(out / "models").publish(train_detector(parse_updates(items)[0]))
    return out


def commands(sim: Path, missing: str) -> dict[str, list[str]]:
    """flag -> a command line whose ``flag`` names ``missing`` (every other file exists)."""
    items, events, labels = str(sim / "items.jsonl"), str(sim / "events.jsonl"), str(sim / "labels.json")
    score = ["score", "--model-dir", str(sim / "models"), "--input", events, "--baseline", items]
    alerts = ["--output", os.devnull, "--alerts", str(sim / "alerts.jsonl")]
    evaluate = {"--items": items, "--events": events, "--labels": labels}
    return {
        "train --items": ["train", "--items", missing, "--model-dir", str(sim / "new-models")],
        "score --input": [*score, "--input", missing],
        "score --baseline": [*score, "--baseline", missing],
        "score --suppressions": [*score, *alerts, "--suppressions", missing],
        "seed --items": ["seed", "--items", missing],
        **{
            f"eval {flag}": [
                "eval",
                *(x for f, v in evaluate.items() for x in (f, missing if f == flag else v)),
            ]
            for flag in evaluate
        },
    }


CASES = [
    "train --items",
    "score --input",
    "score --baseline",
    "score --suppressions",
    "seed --items",
    "eval --items",
    "eval --events",
    "eval --labels",
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("detector", ["default", "seed"])
def test_a_missing_file_names_its_flag_and_path(tmp_path, monkeypatch, capsys, sim, case, detector):
    monkeypatch.setenv("STOCKWATCH_DETECTOR", detector)  # train's two code paths
    missing = str(tmp_path / "nope.jsonl")
    command, flag = case.split()
    assert main(commands(sim, missing)[case]) == 2
    assert capsys.readouterr().err == f"stockwatch {command}: {flag}: no such file: {missing}\n"


@pytest.mark.parametrize("flag", ["--input", "--baseline"])
def test_a_directory_names_its_flag_and_path(tmp_path, capsys, sim, flag):
    assert main([*commands(sim, "")["score --input"][:-2], flag, str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"stockwatch score: {flag}: is a directory: {tmp_path}\n"


@pytest.mark.parametrize("flag", ["--output", "--alerts"])
def test_an_output_in_a_missing_directory_names_its_flag_and_path(tmp_path, capsys, sim, flag):
    target = str(tmp_path / "no-dir" / "out.jsonl")
    argv = [*commands(sim, "")["score --input"][:-2], "--output", os.devnull, "--alerts", os.devnull]
    argv += [flag, target] if flag == "--alerts" else ["--alerts", str(tmp_path / "a.jsonl"), flag, target]
    assert main(argv) == 2
    assert (
        capsys.readouterr().err == f"stockwatch score: {flag}: no such directory to create it in: {target}\n"
    )
