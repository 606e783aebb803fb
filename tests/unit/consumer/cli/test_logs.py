"""The JSON log lines of every command: fixed fields plus whatever a call passes in ``extra=``."""

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import consumer
from consumer.cli.logs import THIRD_PARTY_LOGGERS, configure_logging


@pytest.fixture
def json_logs(capsys):
    """Configure logging as ``main()`` does; yields a reader of the JSON lines written so far."""
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    levels = {name: logging.getLogger(name).level for name in THIRD_PARTY_LOGGERS}
    showwarning = warnings.showwarning

    def read() -> list[dict]:
        return [json.loads(line) for line in capsys.readouterr().err.splitlines()]

    yield read
    root.handlers[:] = before[0]
    root.setLevel(before[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    warnings.showwarning = showwarning


def test_extra_fields_become_json_fields(json_logs):
    configure_logging("INFO")
    logging.getLogger("stockwatch.test").warning(
        "dead letter %s", "bad_json", extra={"topic": "in", "partition": 3, "offset": 41, "tags": ["a"]}
    )
    (line,) = json_logs()
    assert line["msg"] == "dead letter bad_json"
    assert (line["level"], line["logger"]) == ("WARNING", "stockwatch.test")
    assert (line["topic"], line["partition"], line["offset"], line["tags"]) == ("in", 3, 41, ["a"])
    assert line["ts"].endswith("+00:00")


def test_secret_looking_fields_are_not_special_cased(json_logs):
    """The formatter does not guess at secrets (callers never log them): a field is a field."""
    configure_logging("INFO")
    logging.getLogger("stockwatch.test").info("x", extra={"password": "hunter2", "api_key": "k"})
    (line,) = json_logs()
    assert (line["password"], line["api_key"]) == ("hunter2", "k")


def test_traceback_goes_in_exc(json_logs):
    configure_logging("INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("stockwatch.test").exception("failed", extra={"run_id": "r1"})
    (line,) = json_logs()
    assert "ValueError: boom" in line["exc"] and line["run_id"] == "r1"


def test_one_handler_however_often_it_is_configured(json_logs):
    configure_logging("INFO")
    configure_logging("INFO")
    logging.getLogger("stockwatch.test").info("once")
    assert [line["msg"] for line in json_logs()] == ["once"]


@pytest.mark.parametrize("name", ["kafka.conn", "pymongo.topology", "consumer.adapters.confluent.librdkafka"])
def test_client_noise_is_kept_to_warnings_unless_debug(json_logs, name):
    configure_logging("INFO")
    logging.getLogger(name).info("connected")
    logging.getLogger(name).warning("connection lost")
    assert [line["msg"] for line in json_logs()] == ["connection lost"]
    configure_logging("DEBUG")
    logging.getLogger(name).debug("metadata refresh")
    assert [line["msg"] for line in json_logs()] == ["metadata refresh"]


def _kafka_lines(level: str) -> None:
    configure_logging(level)
    logging.getLogger("kafka.cluster").error("Topic %s not found in cluster metadata", "inventory.x")
    logging.getLogger("kafka.net.selector").warning(
        "Task <Task poll> ran for 0.105s (>0.100s threshold). It is blocking the event loop -- "
        "likely a tight sync loop inside a coroutine. Other pollers will time out."
    )
    logging.getLogger("kafka.cluster").error("Topic %s is unauthorized", "inventory.x")  # a real error
    logging.getLogger("kafka.net.selector").warning("Task <Task poll> left RUNNING after step")
    logging.getLogger("stockwatch.test").error("Topic %s not found in cluster metadata", "ours")


def test_known_benign_kafka_lines_are_demoted_to_debug(json_logs):
    _kafka_lines("INFO")
    assert [(line["level"], line["logger"], line["msg"]) for line in json_logs()] == [
        ("ERROR", "kafka.cluster", "Topic inventory.x is unauthorized"),
        ("WARNING", "kafka.net.selector", "Task <Task poll> left RUNNING after step"),
        ("ERROR", "stockwatch.test", "Topic ours not found in cluster metadata"),
    ]


def test_benign_kafka_lines_show_at_debug(json_logs):
    _kafka_lines("DEBUG")
    levels = [(line["level"], line["logger"]) for line in json_logs()]
    assert levels[:2] == [("DEBUG", "kafka.cluster"), ("DEBUG", "kafka.net.selector")]
    assert ("ERROR", "kafka.cluster") in levels


def test_a_python_warning_is_a_json_line_without_source_or_password(json_logs):
    configure_logging("INFO")
    warnings.warn("cannot reach mongodb://u:s3cretpw@db:27017/?x=1", UserWarning, stacklevel=1)
    (record,) = json_logs()
    assert record["logger"] == "py.warnings" and record["category"] == "UserWarning"
    assert record["msg"] == "UserWarning: cannot reach mongodb://u:**********@db:27017/?x=1"


def test_a_bad_mongo_uri_option_is_refused_in_one_line_not_warned(tmp_path):
    """pymongo would only warn about an unknown authMechanism (and ignore it): the command refuses
    the setting in one line (exit 2), with no password and no source path of a warning."""
    (tmp_path / "empty.toml").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")}
    env |= {
        "STOCKWATCH_CONFIG": str(tmp_path / "empty.toml"),
        "STOCKWATCH_MONGO_URI": "mongodb://u:s3cretpw@127.0.0.1:1/?authMechanism=BOGUS&serverSelectionTimeoutMS=200",
        "PYTHONPATH": str(Path(consumer.__file__).parents[1]),
    }
    done = subprocess.run([sys.executable, "-m", "consumer.cli", "suppressions", "list"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert "s3cretpw" not in done.stderr and "site-packages" not in done.stderr
    [line] = done.stderr.splitlines()
    assert done.returncode == 2 and line.startswith("stockwatch suppressions: STOCKWATCH_MONGO_URI (")
    assert "is not a valid Mongo URI: authmechanism" in line


def test_a_configured_secret_a_library_logs_is_masked_as_written_and_as_json_escapes_it(json_logs):
    secrets = ['pa"ss-word-1', "hunter2-secret"]
    configure_logging("DEBUG", secrets)
    config = {"sasl_plain_password": secrets[0], "ssl_password": secrets[1], "client_id": "x"}
    logging.getLogger("kafka.admin.client").debug("Starting KafkaAdminClient with configuration: %s", config)
    logging.getLogger("kafka.admin.client").debug("quoted %r", secrets[0])
    lines = json_logs()
    assert len(lines) == 2
    text = json.dumps(lines)
    assert "ss-word-1" not in text and "hunter2" not in text
    assert lines[0]["msg"].count("**********") == 2 and "'client_id': 'x'" in lines[0]["msg"]


def test_secret_values_lists_every_secret_of_the_settings(monkeypatch):
    from config import Settings, secret_values

    settings = Settings(
        mongo_uri="mongodb://stock:p%40ss-mongo@127.0.0.1:27017/?tls=false",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="stock",
        kafka_sasl_password="sasl-secret-1",
        kafka_client_properties={"ssl.key.password": "key-secret-2", "socket.timeout.ms": 5},
        control_key="c" * 40,
        notify_webhook="https://hooks.example/T0/secret-token",
    )
    found = secret_values(settings)
    assert {"p%40ss-mongo", "p@ss-mongo", "sasl-secret-1", "key-secret-2", "c" * 40} <= set(found)
    assert "https://hooks.example/T0/secret-token" in found and "5" not in found
    assert found == sorted(found, key=len, reverse=True)
