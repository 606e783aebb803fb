"""Whatever a user can cause ends in one line on stderr and an exit status, never a traceback (issue 14)."""

from __future__ import annotations

import argparse
import errno
import io
import json
import os
import sys
from pathlib import Path

import pytest

from config import SettingsError
from consumer.cli import build_parser, main, versions
from consumer.cli.failures import UserFacingError
from consumer.ports import KafkaUnavailableError, MongoUnavailableError
from detection.store_types import ModelNotFoundError, ModelVerificationError
from tests.unit.consumer.cli.test_cli import run, write_items

CLOSED = "127.0.0.1:1"


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))
    monkeypatch.setenv("STOCKWATCH_KAFKA_BOOTSTRAP", CLOSED)  # nothing here may reach a broker
    monkeypatch.setenv("STOCKWATCH_MONGO_URI", f"mongodb://{CLOSED}")


@pytest.fixture
def trained(tmp_path, capsys) -> tuple[Path, str]:
    model_dir = tmp_path / "models"
    items = write_items(tmp_path / "items.jsonl")
    code, out, _ = run(
        capsys, "train", "--detector", "seed", "--items", str(items), "--model-dir", str(model_dir)
    )
    assert code == 0
    return model_dir, json.loads(out)["version"]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------- models list


@pytest.mark.parametrize("kind", ["fifo", "dir", "symlink", "garbage", "huge"])
def test_models_list_with_a_bad_current_is_one_line_exit_2(trained, capsys, kind):
    model_dir, version = trained
    current = model_dir / "CURRENT"
    current.unlink()
    if kind == "fifo":
        os.mkfifo(current)
    elif kind == "dir":
        current.mkdir()
    elif kind == "symlink":
        current.symlink_to(model_dir / version / "manifest.json")
    elif kind == "garbage":
        current.write_bytes(b"\xff\x00not a version")
    else:
        with current.open("wb") as fh:
            fh.truncate(64 << 20)
    code, _, err = run(capsys, "models", "list", "--model-dir", str(model_dir))
    assert code == 2
    assert "CURRENT" in one_line(err)


@pytest.mark.parametrize("where", ["/etc/passwd", "/proc/1"])
def test_models_list_on_a_file_or_an_unlistable_directory_is_one_line(capsys, where):
    code, _, err = run(capsys, "models", "list", "--model-dir", where)
    assert code in (1, 2)
    assert where in one_line(err)


@pytest.mark.parametrize(
    "argv",
    [
        ["models", "list"],
        ["models", "show"],
        ["models", "rollback", "20261125T180102Z-1a2b3c4d"],
        ["score", "--input", os.devnull],
        ["scan"],
        ["consume"],
    ],
)
def test_a_missing_model_directory_is_one_line_exit_1(tmp_path, capsys, monkeypatch, argv):
    missing = tmp_path / "no-such-dir"
    monkeypatch.setenv("STOCKWATCH_MODEL_DIR", str(missing))
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    line = one_line(err)
    assert str(missing) in line and "does not exist" in line and "STOCKWATCH_MODEL_DIR" in line


def test_model_dir_flag_overrides_the_setting_in_scan_and_consume(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STOCKWATCH_MODEL_DIR", str(tmp_path))  # exists
    for command in ("scan", "consume"):
        code, _, err = run(capsys, command, "--model-dir", str(tmp_path / "flag-dir"))
        assert code == 1 and "flag-dir" in one_line(err) and "--model-dir" in err


# ---------------------------------------------------------------------------- last-resort handler


@pytest.mark.parametrize(
    ("exc", "status", "needle"),
    [
        (KafkaUnavailableError("no brokers"), 1, "STOCKWATCH_KAFKA_BOOTSTRAP"),
        (MongoUnavailableError("server selection timed out"), 1, "STOCKWATCH_MONGO_URI"),
        (ModelNotFoundError("no model published yet"), 2, "no model published yet"),
        (ModelVerificationError("checksum mismatch"), 2, "checksum mismatch"),
        (UserFacingError("port 9400 in use (STOCKWATCH_HTTP_PORT)"), 1, "STOCKWATCH_HTTP_PORT"),
        (SettingsError(["mongo_db: bad"]), 2, "mongo_db"),
    ],
)
def test_known_user_causable_exceptions_become_one_line(tmp_path, capsys, monkeypatch, exc, status, needle):
    def handler(args: argparse.Namespace, settings: object) -> int:
        raise exc

    monkeypatch.setattr(versions, "cmd_models_list", handler)
    code, _, err = run(capsys, "models", "list", "--model-dir", str(tmp_path))
    assert code == status
    line = one_line(err)
    assert line.startswith("stockwatch models list: ") and needle in line


def test_ctrl_c_is_one_line_and_exit_130_not_a_traceback(tmp_path, capsys, monkeypatch):
    def handler(args: argparse.Namespace, settings: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(versions, "cmd_models_list", handler)
    code, _, err = run(capsys, "models", "list", "--model-dir", str(tmp_path))
    assert code == 130
    assert one_line(err) == "stockwatch models list: interrupted"


def test_a_bug_still_shows_its_traceback(tmp_path, monkeypatch):
    def handler(args: argparse.Namespace, settings: object) -> int:
        raise KeyError("a genuine bug")

    monkeypatch.setattr(versions, "cmd_models_list", handler)
    with pytest.raises(KeyError, match="a genuine bug"):
        main(["models", "list", "--model-dir", str(tmp_path)])


def test_mongo_failures_never_show_the_password(tmp_path, capsys, monkeypatch):
    uri = "mongodb://stock:hunter2-secret@127.0.0.1:1/warehouse"
    monkeypatch.setenv("STOCKWATCH_MONGO_URI", uri)

    def handler(args: argparse.Namespace, settings: object) -> int:
        raise MongoUnavailableError(f"cannot reach {uri}: password hunter2-secret refused")

    monkeypatch.setattr(versions, "cmd_models_list", handler)
    code, out, err = run(capsys, "models", "list", "--model-dir", str(tmp_path))
    assert code == 1
    assert "hunter2" not in err + out and "stock:**********@127.0.0.1:1" in one_line(err)


def test_suppressions_list_on_a_failing_mongo_is_one_line_without_the_password(capsys, monkeypatch):
    from consumer.adapters.mongo import WorkerMongo

    uri = "mongodb://stock:hunter2-secret@127.0.0.1:1/warehouse"
    monkeypatch.setenv("STOCKWATCH_MONGO_URI", uri)

    class Refusing:
        def suppressions(self) -> list[dict[str, object]]:  # FerretDB's refusal spans two lines
            raise MongoUnavailableError("Unsupported authentication mechanism.\nSee https://docs for more")

        def close(self) -> None:
            pass

    monkeypatch.setattr(WorkerMongo, "from_settings", staticmethod(lambda mongo: Refusing()))
    code, out, err = run(capsys, "suppressions", "list")
    assert code == 1
    line = one_line(err)
    assert line.startswith("stockwatch suppressions: Mongo at ") and "STOCKWATCH_MONGO_URI" in line
    assert "hunter2" not in err + out


class _FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("argv", [["config"], ["config", "--json"], ["models", "list"]])
def test_a_stdout_on_a_full_disk_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.setenv("STOCKWATCH_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "stdout", _FullDisk())
    assert main(argv) == 1
    assert (
        one_line(capsys.readouterr().err)
        == f"stockwatch {' '.join(argv[:2]) if argv[0] == 'models' else argv[0]}: No space left on device"
    )


# ---------------------------------------------------------------------------- a consistent CLI


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for inner, subsub in _subparsers(sub):
                    yield f"{name} {inner}", subsub


def test_every_flag_of_every_command_has_help():
    undocumented = [
        f"{name} {action.option_strings or action.dest}"
        for name, sub in _subparsers(build_parser())
        for action in sub._actions
        if action.help is None
    ]
    assert undocumented == []


@pytest.mark.parametrize("command", ["consume", "scan", "retrain-worker", "score", "models list", "train"])
def test_every_command_that_uses_a_model_directory_takes_model_dir_and_documents_exit_statuses(command):
    sub = dict(_subparsers(build_parser()))[command]
    assert "--model-dir" in sub.format_help()
    assert "Exit status" in (sub.description or "") + (
        dict(_subparsers(build_parser())).get("models").description or ""
    )


def test_score_shows_model_version_and_still_takes_version(trained, capsys, tmp_path):
    model_dir, version = trained
    help_text = dict(_subparsers(build_parser()))["score"].format_help()
    assert "--model-version" in help_text and "--version" not in help_text.replace("--model-version", "")
    other = "20200101T000000Z-0badf00d"
    for flag in ("--model-version", "--version"):  # both select the version: a missing one is refused
        code, _, _ = run(capsys, "score", "--model-dir", str(model_dir), flag, version, "--input", os.devnull)
        assert code == 0
        code, _, err = run(capsys, "score", "--model-dir", str(model_dir), flag, other, "--input", os.devnull)
        assert code == 2 and other in err


def test_log_level_setting_applies_and_the_flag_wins(tmp_path, capsys, monkeypatch):
    items = str(write_items(tmp_path / "items.jsonl"))
    monkeypatch.setenv("STOCKWATCH_LOG_LEVEL", "warning")
    code, _, err = run(capsys, "train", "--items", items, "--model-dir", str(tmp_path / "a"))
    assert code == 0 and "published model" not in err
    code, _, err = run(
        capsys, "--log-level", "INFO", "train", "--items", items, "--model-dir", str(tmp_path / "b")
    )
    assert code == 0 and "published model" in err
    monkeypatch.setenv("STOCKWATCH_LOG_LEVEL", "chatty")
    code, _, err = run(capsys, "models", "list", "--model-dir", str(tmp_path / "a"))
    assert code == 2 and "STOCKWATCH_LOG_LEVEL" in one_line(err)


@pytest.mark.parametrize(
    "argv",
    [
        ["consume", "--timeout", "nan"],
        ["consume", "--timeout", "-1"],
        ["consume", "--max-events", "0"],
        ["retrain-worker", "--run-for", "inf"],
        ["train", "--items", os.devnull, "--threshold", "nan"],
    ],
)
def test_numbers_no_command_can_use_are_usage_errors(capsys, argv):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


@pytest.mark.parametrize("detector", ["seed", "default"])
@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--n-estimators", "0"], "--n-estimators"),
        (["--random-state", "-1"], "--random-state"),
        (["--max-samples", "1.5"], "--max-samples"),
        (["--max-samples", str(2**70)], "--max-samples"),  # published, then a traceback writing the summary
    ],
)
def test_a_forest_flag_out_of_range_is_one_line_naming_it(tmp_path, capsys, detector, flags, named):
    items = write_items(tmp_path / "items.jsonl")
    argv = [
        "train",
        "--detector",
        detector,
        "--items",
        str(items),
        "--model-dir",
        str(tmp_path / "m"),
        *flags,
    ]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert one_line(err).startswith(f"stockwatch train: {named}: ") and "pydantic" not in err
    assert not (tmp_path / "m").exists()  # refused before anything is published


@pytest.mark.parametrize("size", ["0", "-1", str(2**64)])
def test_a_chunk_size_no_reader_can_use_is_a_usage_error(size):
    with pytest.raises(SystemExit) as exited:
        main(["score", "--chunk-size", size])
    assert exited.value.code == 2


# ---------------------------------------------------------------------------- SASL


@pytest.mark.parametrize(
    ("reason", "refused"),
    [
        (
            "cannot reach Kafka at 127.0.0.1:9094 (STOCKWATCH_KAFKA_BOOTSTRAP) within 9.6s: KafkaTimeoutError",
            False,
        ),
        ("cannot reach Kafka at 127.0.0.1:9094: SaslAuthenticationFailedError", True),
        (
            'KafkaError{code=_AUTHENTICATION,val=-169,str="SASL authentication error: invalid credentials"}',
            True,
        ),
    ],
)
def test_a_failure_under_sasl_names_the_user_never_the_password(monkeypatch, reason, refused):
    from config import load_settings
    from consumer.cli.failures import kafka_unreachable

    monkeypatch.setenv("STOCKWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9094")
    monkeypatch.setenv("STOCKWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("STOCKWATCH_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("STOCKWATCH_KAFKA_SASL_USERNAME", "stockwatch")
    monkeypatch.setenv("STOCKWATCH_KAFKA_SASL_PASSWORD", "hunter2-wrong-password")
    message = kafka_unreachable(load_settings(), KafkaUnavailableError(reason))
    assert "STOCKWATCH_KAFKA_SASL_USERNAME (stockwatch, SCRAM-SHA-512)" in message
    assert "hunter2" not in message
    if refused:
        assert message.startswith("Kafka at 127.0.0.1:9094 refused the SASL credentials of")
    else:
        assert message.startswith(reason) and "authentication may have failed" in message


def test_a_failure_without_sasl_says_nothing_of_credentials(monkeypatch):
    from config import load_settings
    from consumer.cli.failures import kafka_unreachable

    monkeypatch.setenv("STOCKWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    message = kafka_unreachable(load_settings(), KafkaUnavailableError("KafkaTimeoutError"))
    assert message == "Kafka at 127.0.0.1:1 (STOCKWATCH_KAFKA_BOOTSTRAP) is unavailable: KafkaTimeoutError"


@pytest.mark.parametrize(
    "command",
    [
        "train",
        "score",
        "eval",
        "consume",
        "retrain-worker",
        "ctl",
        "feedback",
        "notify",
        "scan",
        "seed",
        "config",
    ],
)
def test_help_says_what_the_command_does_and_its_exit_statuses(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal's width
    description = text.partition("options:")[0]  # usage, then the description
    assert done.value.code == 0 and "Exit status: 0" in description, description


def test_eval_help_names_its_inputs_and_outputs(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("snapshot S (--items)", "change events E (--events)", "labels L (--labels",
                  "average precision", "alerts per 1,000 updates", "Exit status: 0 evaluated; 2 usage"):  # fmt: skip
        assert words in text, words
