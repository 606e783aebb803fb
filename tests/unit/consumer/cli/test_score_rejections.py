"""How ``stockwatch score`` (default detector) reports rejected lines: in line order, and with a
hint towards ``--baseline`` when updates of unknown items are rejected without one."""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson
import pytest

from consumer.cli import main
from consumer.cli.changes import BASELINE_HINT
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
    write(out, SimConfig(seed=11, n_items=120, days=3, error_rate=0.02, new_item_share=0.0))
    items = [orjson.loads(line) for line in (out / "items.jsonl").read_bytes().splitlines()]
    ModelStore(out / "models").publish(train_detector(parse_updates(items)[0]))
    return out


def score(capsys, sim: Path, lines: list[bytes], *extra: str) -> tuple[int, str, str]:
    path = sim / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    code = main(["score", "--model-dir", str(sim / "models"), "--input", str(path), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def rejected_lines(err: str) -> list[int]:
    return [int(n) for n in re.findall(r": line (\d+): rejected: ", err)]


def test_rejections_are_reported_in_line_order_whatever_rejected_them(capsys, sim) -> None:
    items = (sim / "items.jsonl").read_bytes().splitlines()
    partial = b'{"item_id": "never-seen-%d", "stock_quantity": 5}'
    lines = [items[0], partial % 1, b"not json", items[1], partial % 2, b"[1, 2]", b'"text"', partial % 3]
    for chunk_size in ("3", "100"):  # across chunks and within one
        code, out, err = score(capsys, sim, lines, "--chunk-size", chunk_size)
        assert code == 1 and len(out.splitlines()) == 2
        assert rejected_lines(err) == [2, 3, 5, 6, 7, 8], err
        assert "line 3: rejected: invalid JSON" in err and "line 6: rejected: expected a JSON object" in err


def test_rejected_updates_of_unknown_items_without_a_baseline_hint_at_it_once(capsys, sim) -> None:
    events = (sim / "events.jsonl").read_bytes().splitlines()[:400]
    code, _, err = score(capsys, sim, events, "--chunk-size", "50")
    assert code == 1 and err.count("rejected: missing_field") > 1  # the simulator sends partial updates
    assert err.count(BASELINE_HINT) == 1 and "--baseline ITEMS.jsonl" in BASELINE_HINT
    # the hint follows the first such rejection rather than waiting for the end of the input
    assert err.index("rejected: missing_field") < err.index(BASELINE_HINT) < len(err) - len(BASELINE_HINT) - 1


def test_no_hint_with_a_baseline_or_without_unknown_items(capsys, sim) -> None:
    events = (sim / "events.jsonl").read_bytes().splitlines()[:400]
    unknown = b'{"item_id": "never-seen", "stock_quantity": 5}'
    code, _, err = score(capsys, sim, [*events, unknown], "--baseline", str(sim / "items.jsonl"))
    assert code == 1 and err.count("rejected: missing_field") == 1 and BASELINE_HINT not in err
    items = (sim / "items.jsonl").read_bytes().splitlines()
    code, _, err = score(capsys, sim, [items[0], b"not json"])
    assert code == 1 and rejected_lines(err) == [2] and BASELINE_HINT not in err


def wrong_file(tmp_path: Path) -> Path:
    """A file of 30 lines, none an item state (e.g. the decisions of another run)."""
    path = tmp_path / "wrong.jsonl"
    path.write_bytes(
        b"".join(b'["decision", %d]\n' % n for n in range(27))
        + b'not json\n\n{"stock_quantity": "many"}\n[]\n'
    )
    return path


def capped(err: str, path: Path) -> None:
    """The first few rejections, one per line, then one line counting the rest."""
    assert rejected_lines(err) == [1, 2, 3, 4, 5], err
    assert f"{path}: 25 more rejected line(s) not shown (30 in all)" in err
    assert "Traceback" not in err


def test_a_baseline_without_one_valid_line_is_refused_in_a_few_lines(tmp_path, capsys, sim) -> None:
    wrong, output = wrong_file(tmp_path), tmp_path / "out.jsonl"
    events = (sim / "events.jsonl").read_bytes().splitlines()[:50]
    code, _, err = score(capsys, sim, events, "--baseline", str(wrong), "--output", str(output))
    assert code == 2 and BASELINE_HINT not in err, err
    capped(err, wrong)
    assert err.splitlines()[-1] == f"stockwatch score: --baseline {wrong} holds no valid item (30 rejected)"
    assert not output.exists()  # refused before anything was scored


@pytest.mark.parametrize("detector", ["default", "seed"])
def test_train_items_without_one_valid_line_is_refused_as_score_baseline_is(
    tmp_path, capsys, detector
) -> None:
    wrong = wrong_file(tmp_path)
    argv = ["train", "--detector", detector, "--items", str(wrong), "--model-dir", str(tmp_path / "m")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    capped(err, wrong)
    assert err.splitlines()[-1] == f"stockwatch train: --items {wrong} holds no valid item (30 rejected)"
