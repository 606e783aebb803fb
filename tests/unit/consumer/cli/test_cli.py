"""The ``stockwatch`` CLI: train, score, models list/show/rollback (in-process and one subprocess run)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

import detection
from consumer.cli import main
from consumer.wire.events import anomaly_id
from detection import parse_item
from detection.store import ModelStore
from tests.schemas import validate, validate_all

PLANTED = [
    b'{"item_id": "ok-1", "event_id": "e1", "stock_quantity": 120, "min_stock_level": 50, '
    b'"max_stock_level": 200, "price": 10}',
    b'{"item_id": "huge", "event_id": "e2", "stock_quantity": 50000, "min_stock_level": 50, '
    b'"max_stock_level": 200, "price": 10}',
    b'{"item_id": "bad-json", "stock_quantity": ',  # line 3: bad JSON
    b'{"item_id": "nan", "stock_quantity": "NaN", "min_stock_level": 50}',  # line 4
    b'{"sku": "ok-2", "stock_quantity": 80, "min_stock_level": 50, "max_stock_level": 200, "price": 12}',
    b'{"item_id": "bool", "stock_quantity": true}',  # line 6
    b"",  # blank lines are skipped, not rejected
    b'{"item_id": "negative", "event_id": "e3", "stock_quantity": -40, "min_stock_level": 50, '
    b'"max_stock_level": 200, "price": 10}',
    b"[1, 2, 3]",  # line 9: not an object
]
VALID_IDS = ["ok-1", "huge", "ok-2", "negative"]
VALID_LINES = [1, 2, 5, 8]
REJECTED_LINES = [3, 4, 6, 9]


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()  # no file settings; a missing STOCKWATCH_CONFIG file is an error
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))


def write_items(path: Path, n: int = 300, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = [
        orjson.dumps(
            {
                "sku": f"sku-{i}",
                "stock_quantity": int(rng.integers(60, 190)),
                "min_stock_level": 50,
                "max_stock_level": 200,
                "price": round(float(rng.uniform(5, 20)), 2),
            }
        )
        for i in range(n)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def trained(tmp_path, capsys) -> tuple[Path, str]:
    model_dir = tmp_path / "models"
    code, out, _ = run(
        capsys,
        "train",
        "--detector",
        "seed",
        "--items",
        str(write_items(tmp_path / "items.jsonl")),
        "--model-dir",
        str(model_dir),
    )
    assert code == 0
    return model_dir, json.loads(out)["version"]


def test_train_prints_summary_and_publishes(tmp_path, capsys):
    items = write_items(tmp_path / "items.jsonl")
    code, out, _ = run(capsys, "train", "--detector", "seed", "--items", str(items), "--model-dir", str(tmp_path / "m"),
                       "--contamination", "0.05", "--n-estimators", "50", "--max-samples", "128",
                       "--random-state", "7")  # fmt: skip
    assert code == 0
    summary = validate("train-summary", json.loads(out))
    assert summary["version"] == ModelStore(tmp_path / "m").current_version()
    assert summary["n_samples"] == 300 and summary["threshold"] == 0.0
    assert 0.0 < summary["anomaly_rate"] < 0.2 and summary["training_seconds"] >= 0
    assert isinstance(summary["offset"], float)
    meta = ModelStore(tmp_path / "m").metadata(summary["version"])
    assert (meta.params.contamination, meta.params.n_estimators) == (0.05, 50)
    assert (meta.params.max_samples, meta.params.random_state) == (128, 7)


def test_train_with_too_few_items_fails_without_model(tmp_path, capsys):
    items = write_items(tmp_path / "few.jsonl", n=9)
    code, out, err = run(
        capsys, "train", "--detector", "seed", "--items", str(items), "--model-dir", str(tmp_path / "m")
    )
    assert code == 2 and out == ""
    assert "10" in err
    assert ModelStore(tmp_path / "m").current_version() is None


def test_train_with_bad_parameter_is_a_usage_error(tmp_path, capsys):
    items = write_items(tmp_path / "items.jsonl")
    code, _, err = run(capsys, "train", "--detector", "seed", "--items", str(items), "--model-dir", str(tmp_path / "m"),
                       "--contamination", "0.9")  # fmt: skip
    assert code == 2 and "contamination" in err


def test_score_flags_planted_anomalies_and_reports_bad_lines(tmp_path, capsys, trained):
    model_dir, version = trained
    updates = tmp_path / "updates.jsonl"
    updates.write_bytes(b"\n".join(PLANTED) + b"\n")
    out_file = tmp_path / "decisions.jsonl"
    code, _, err = run(capsys, "score", "--model-dir", str(model_dir), "--input", str(updates),
                       "--output", str(out_file))  # fmt: skip
    assert code == 1
    decisions = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [d["item_id"] for d in decisions] == VALID_IDS
    assert [d.get("event_id") for d in decisions] == ["e1", "e2", None, "e3"]
    flagged = {d["item_id"]: d["is_anomaly"] for d in decisions}
    assert flagged["huge"] and flagged["negative"]
    assert not flagged["ok-1"] and not flagged["ok-2"]
    # One schema for every line: an anomaly event when anomalous, else a decision event.
    validate_all("score-line", decisions)
    topic = f"file:{updates}"
    lines = updates.read_bytes().splitlines(keepends=True)
    for d, lineno in zip(decisions, VALID_LINES, strict=True):
        assert d["model_version"] == version and d["threshold"] == 0.0
        assert d["source"] == {"topic": topic, "partition": 0, "offset": lineno, "timestamp": None}
        content = hashlib.sha256(b"".join(lines[:lineno])).hexdigest()[:32]  # the input up to the line
        assert d["anomaly_id"] == anomaly_id(topic, 0, lineno, version, content)
        assert len(d["features"]) == 7
        if d["is_anomaly"]:
            validate("anomaly-event", d)
            assert d["severity"] in {"low", "medium", "high", "critical"} and d["reasons"]
            assert d["item"]["item_id"] == d["item_id"]
        else:
            validate("decision-event", d)
            assert not {"severity", "reasons", "item"} & d.keys()
    assert decisions[1]["features"]["stock_quantity"] == 50000.0
    assert decisions[1]["item"]["stock_quantity"] == 50000.0
    for lineno in REJECTED_LINES:
        assert f"line {lineno}: rejected" in err
    assert "NaN" in err and "boolean" in err
    assert "line 7" not in err and "line 1:" not in err

    # The scores are the model's own, bit for bit.
    model = ModelStore(model_dir).load()
    items = [parse_item(json.loads(PLANTED[i])) for i in (0, 1, 4, 7)]
    expected = model.decide(items)
    assert [d["score"] for d in decisions] == np.asarray(expected.scores).tolist()
    assert [d["is_anomaly"] for d in decisions] == np.asarray(expected.is_anomaly).tolist()


def test_score_all_valid_exits_zero_and_chunks_keep_order(tmp_path, capsys, trained):
    model_dir, _ = trained
    updates = write_items(tmp_path / "updates.jsonl", n=57, seed=3)
    code, whole, err = run(capsys, "score", "--model-dir", str(model_dir), "--input", str(updates))
    assert code == 0 and "rejected:" not in err
    code, chunked, _ = run(capsys, "score", "--model-dir", str(model_dir), "--input", str(updates),
                           "--chunk-size", "5")  # fmt: skip
    assert code == 0

    def lines(out: str) -> list[dict[str, object]]:  # detected_at: when each chunk was scored
        return [
            {k: v for k, v in json.loads(line).items() if k != "detected_at"} for line in out.splitlines()
        ]

    assert lines(chunked) == lines(whole)
    assert [d["item_id"] for d in lines(whole)] == [f"sku-{i}" for i in range(57)]
    assert [d["source"]["offset"] for d in lines(whole)] == list(range(1, 58))  # type: ignore[index]


def test_score_without_a_model_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "score", "--model-dir", str(tmp_path / "empty"), "--input", os.devnull)
    assert code == 2 and "no model published yet" in err


def test_model_dir_and_signing_key_come_from_settings(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STOCKWATCH_MODEL_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("STOCKWATCH_MODEL_SIGNING_KEY", "sekrit-signing-key-0123456789abcdef")
    code, out, _ = run(
        capsys, "train", "--detector", "seed", "--items", str(write_items(tmp_path / "items.jsonl"))
    )
    assert code == 0
    version = json.loads(out)["version"]
    assert (tmp_path / "from-env" / version / "manifest.sig").exists()
    monkeypatch.setenv("STOCKWATCH_MODEL_SIGNING_KEY", "another-signing-key-0123456789abcdef")
    code, _, err = run(capsys, "score", "--input", os.devnull)
    assert code == 2 and "signature" in err


def test_models_list_show_rollback(tmp_path, capsys, trained):
    model_dir, first = trained
    code, out, _ = run(capsys, "train", "--detector", "seed", "--items", str(write_items(tmp_path / "b.jsonl", seed=9)),
                       "--model-dir", str(model_dir))  # fmt: skip
    second = json.loads(out)["version"]

    code, out, _ = run(capsys, "models", "list", "--model-dir", str(model_dir), "--json")
    rows = validate("models-list", json.loads(out))
    assert code == 0 and [r["version"] for r in rows] == [first, second]
    assert [r["is_current"] for r in rows] == [False, True] and rows[0]["n_samples"] == 300

    code, out, _ = run(capsys, "models", "list", "--model-dir", str(model_dir))
    table = out.splitlines()
    assert code == 0 and "VERSION" in table[0]
    assert table[2].startswith(f"* {second}") and table[1].startswith(f"  {first}")

    code, out, _ = run(capsys, "models", "show", first, "--model-dir", str(model_dir))
    meta = validate("models-show", json.loads(out))
    assert code == 0 and meta["version"] == first and meta["n_samples"] == 300
    assert len(meta["feature_names"]) == 7 and meta["params"]["contamination"] == 0.1  # the seed's own

    code, out, _ = run(capsys, "models", "rollback", first, "--model-dir", str(model_dir))
    assert code == 0 and validate("models-rollback", json.loads(out)) == {
        "current": first,
        "previous": second,
    }
    assert ModelStore(model_dir).current_version() == first
    code, out, _ = run(capsys, "models", "show", "--model-dir", str(model_dir))
    assert json.loads(out)["version"] == first

    code, _, err = run(
        capsys, "models", "rollback", "20200101T000000Z-00000000", "--model-dir", str(model_dir)
    )
    assert code == 2 and "not found" in err
    assert ModelStore(model_dir).current_version() == first


def test_logs_are_json_lines_on_stderr(tmp_path, capsys):
    items = write_items(tmp_path / "items.jsonl")
    code, _, err = run(
        capsys,
        "--log-level",
        "debug",
        "train",
        "--detector",
        "seed",
        "--items",
        str(items),
        "--model-dir",
        str(tmp_path),
    )
    assert code == 0
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(r["logger"] == "detection.store" and "published" in r["msg"] for r in records)
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)


def test_console_script_end_to_end(tmp_path):
    """The installed ``stockwatch`` script: train, then score stdin to stdout."""
    script = Path(sys.executable).parent / "stockwatch"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")}
    env["STOCKWATCH_CONFIG"] = str(tmp_path / "empty.toml")
    # The tree under test first on the path (independent of how the editable install resolves it).
    env["PYTHONPATH"] = str(Path(detection.__file__).parent.parent)
    model_dir = str(tmp_path / "models")
    items = str(write_items(tmp_path / "items.jsonl"))
    train = subprocess.run([script, "train", "--detector", "seed", "--items", items, "--model-dir", model_dir],
                           env=env, capture_output=True, check=False)  # fmt: skip
    assert train.returncode == 0, train.stderr
    version = json.loads(train.stdout)["version"]
    score = subprocess.run([script, "score", "--model-dir", model_dir], input=b"\n".join(PLANTED),
                           env=env, capture_output=True, check=False)  # fmt: skip
    assert score.returncode == 1
    decisions = validate_all("score-line", (json.loads(line) for line in score.stdout.splitlines()))
    assert [d["item_id"] for d in decisions] == VALID_IDS
    assert [(d["source"]["topic"], d["source"]["offset"]) for d in decisions] == [
        ("stdin", n) for n in VALID_LINES
    ]
    assert all(d["model_version"] == version for d in decisions)
    assert [d["is_anomaly"] for d in decisions] == [False, True, False, True]
    for lineno in REJECTED_LINES:
        assert f"line {lineno}: rejected".encode() in score.stderr


def test_empty_signing_key_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STOCKWATCH_MODEL_SIGNING_KEY", "")
    code, _, err = run(capsys, "models", "list", "--model-dir", str(tmp_path))
    assert code == 2
    assert "STOCKWATCH_MODEL_SIGNING_KEY: the model signing key is set but empty" in err


@pytest.mark.parametrize("variable", ["STOCKWATCH_CONTROL_KEY", "STOCKWATCH_MODEL_SIGNING_KEY"])
def test_keys_shorter_than_32_bytes_are_refused_without_echoing_them(tmp_path, capsys, monkeypatch, variable):
    monkeypatch.setenv("STOCKWATCH_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv(variable, "shortkey-" + "x" * 22)  # 31 bytes
    code, out, err = run(capsys, "models", "list")
    assert code == 2 and out == ""
    assert f"{variable}: the {variable[11:].lower().replace('_', ' ')} is only 31 bytes long" in err
    assert "keys need at least 32 bytes" in err and "Value error" not in err
    assert "shortkey" not in err
    monkeypatch.setenv(variable, "x" * 32)
    code, _, err = run(capsys, "models", "list")
    assert "keys need" not in err


def test_keygen_prints_a_fresh_key_the_settings_accept(capsys, monkeypatch):
    monkeypatch.setenv("STOCKWATCH_CONTROL_KEY", "x")  # the short key keygen is run to replace
    keys = []
    for _ in range(2):
        with pytest.raises(SystemExit) as exit_info:
            main(["keygen"])
        assert exit_info.value.code == 0
        keys.append(capsys.readouterr().out.strip())
    assert keys[0] != keys[1]
    assert all(len(k.encode()) >= 32 for k in keys)
    from config import Settings

    monkeypatch.setenv("STOCKWATCH_CONTROL_KEY", keys[0])
    settings = Settings()
    assert settings.control_key is not None and settings.control_key.get_secret_value() == keys[0]


def test_keygen_imports_no_heavy_library():
    code = (
        "import sys; from consumer.cli import main\n"
        "try:\n    main(['keygen'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('numba', 'sklearn', 'kafka', 'confluent_kafka') if m in sys.modules)\n"
        "print(heavy, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(Path(detection.__file__).parents[1])})  # fmt: skip
    assert done.stderr.strip() == "[]"
    assert len(done.stdout.strip()) >= 32


def _keygen_into(stdout: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(detection.__file__).parents[1])}
    return subprocess.run([sys.executable, "-m", "consumer.cli", "keygen"], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, env=env, check=False)  # fmt: skip


def test_keygen_on_a_full_disk_is_one_line_and_exit_1():
    with open("/dev/full", "w") as full:
        done = _keygen_into(full.fileno())
    assert done.returncode == 1
    assert done.stderr == "stockwatch keygen: No space left on device writing stdout\n"


def test_keygen_into_a_pipe_nobody_reads_exits_141_quietly():
    read, write = os.pipe()
    os.close(read)  # the reader left before the key was written
    try:
        done = _keygen_into(write)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def test_score_missing_input_file_is_a_usage_error(tmp_path, capsys, trained):
    model_dir, _ = trained
    code, out, err = run(capsys, "score", "--model-dir", str(model_dir), "--input", str(tmp_path / "nope"))
    assert code == 2 and out == "" and f"--input: no such file: {tmp_path / 'nope'}" in err


def test_a_copied_version_is_refused_by_name_in_list_show_and_rollback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STOCKWATCH_MODEL_SIGNING_KEY", "sekrit-signing-key-0123456789abcdef")
    model_dir = tmp_path / "models"
    code, out, _ = run(capsys, "train", "--detector", "seed", "--items", str(write_items(tmp_path / "i.jsonl")),
                       "--model-dir", str(model_dir))  # fmt: skip
    version = json.loads(out)["version"]
    copy = version[:-8] + ("deadbeef" if not version.endswith("deadbeef") else "0badcafe")
    shutil.copytree(model_dir / version, model_dir / copy)
    why = f"manifest.json names version {version}, not {copy}"

    code, out, _ = run(capsys, "models", "list", "--model-dir", str(model_dir))
    (row,) = [line for line in out.splitlines() if copy in line]
    assert code == 0 and why in row and " yes " not in row
    code, out, _ = run(capsys, "models", "list", "--model-dir", str(model_dir), "--json")
    rows = {r["version"]: r for r in validate("models-list", json.loads(out))}
    assert rows[copy]["signed"] is False and rows[version]["signed"] is True
    for action in ("show", "rollback"):
        code, _, err = run(capsys, "models", action, copy, "--model-dir", str(model_dir))
        assert code == 2 and why in err
