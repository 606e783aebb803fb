"""``score``'s anomaly_id depends on the input's content up to the line, not only on its position:
two different inputs read from stdin never share an id; the same input always gets the same ones."""

from __future__ import annotations

import io
import os
import sys

import orjson
import pytest

from consumer.cli import main
from tests.unit.consumer.cli.test_cli import write_items


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))


@pytest.fixture(scope="module", params=["default", "seed"])
def trained(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    items = write_items(root / "items.jsonl")
    (root / "empty.toml").touch()
    with pytest.MonkeyPatch.context() as patch:  # module scope: before the autouse fixture
        for name in [name for name in os.environ if name.startswith("STOCKWATCH_")]:
            patch.delenv(name)
        patch.setenv("STOCKWATCH_CONFIG", str(root / "empty.toml"))
        argv = ["train", "--detector", request.param, "--items", str(items), "--model-dir", str(root / "m")]
        assert main(argv) == 0
    return root / "m", items.read_bytes().splitlines()


def stdin_ids(monkeypatch, capsys, model_dir, lines: list[bytes]) -> list[str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n".join(lines) + b"\n")))
    assert main(["score", "--model-dir", str(model_dir)]) == 0
    out = capsys.readouterr().out
    events = [orjson.loads(line) for line in out.splitlines()]
    assert all(e["source"]["topic"] == "stdin" for e in events)  # where it was read: unchanged
    return [e["anomaly_id"] for e in events]


def test_different_stdin_inputs_never_share_an_id(monkeypatch, capsys, trained):
    model_dir, items = trained
    first = stdin_ids(monkeypatch, capsys, model_dir, items[:20])
    second = stdin_ids(monkeypatch, capsys, model_dir, items[20:40])
    assert len(set(first)) == 20 and not set(first) & set(second)
    # the same lines after a different one: the decisions may differ (the default's item history)
    shifted = stdin_ids(monkeypatch, capsys, model_dir, [items[40], *items[1:20]])
    assert not set(first) & set(shifted)


def test_the_same_input_gets_the_same_ids(monkeypatch, capsys, trained):
    model_dir, items = trained
    assert stdin_ids(monkeypatch, capsys, model_dir, items[:20]) == stdin_ids(
        monkeypatch, capsys, model_dir, items[:20]
    )


def test_the_ids_do_not_depend_on_how_the_input_is_chunked(monkeypatch, capsys, trained):
    model_dir, items = trained
    whole = stdin_ids(monkeypatch, capsys, model_dir, items[:20])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n".join(items[:20]) + b"\n")))
    assert main(["score", "--model-dir", str(model_dir), "--chunk-size", "3"]) == 0
    assert [orjson.loads(line)["anomaly_id"] for line in capsys.readouterr().out.splitlines()] == whole
