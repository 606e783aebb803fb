"""A Kafka client that refuses a value of STOCKWATCH_KAFKA_CLIENT_PROPERTIES when it is built is one
line (exit 2) with secrets masked; the same error type raised outside a client is a bug (None)."""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

from config import Settings
from consumer.cli.failures import EXIT_USAGE, explain

SECRET = "hunter2-very-secret"


def _settings() -> Settings:
    return Settings(kafka_client_properties={"compression.type": "bogus", "ssl.key.password": SECRET})


def _raised_in_a_kafka_constructor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BaseException:
    """A ValueError raised in an ``__init__`` of a module inside the (stand-in) kafka package."""
    package = tmp_path / "kafka"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "producer.py").write_text(
        "class KafkaProducer:\n    def __init__(self):\n        raise ValueError('Not supported codec: bogus')\n"
    )
    fake = types.ModuleType("kafka")
    fake.__file__ = str(package / "__init__.py")
    monkeypatch.setitem(sys.modules, "kafka", fake)
    spec = importlib.util.spec_from_file_location("kafka_producer_standin", package / "producer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(ValueError) as caught:
        module.KafkaProducer()
    return caught.value


def test_a_kafka_python_constructor_refusing_a_value_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = explain(_raised_in_a_kafka_constructor(tmp_path, monkeypatch), _settings())
    assert got is not None
    message, status = got
    assert status == EXIT_USAGE
    assert "Not supported codec: bogus" in message and "STOCKWATCH_KAFKA_CLIENT_PROPERTIES" in message


def test_the_same_error_outside_a_kafka_client_is_a_bug() -> None:
    class Ours:
        def __init__(self) -> None:
            raise ValueError("Not supported codec: bogus")

    with pytest.raises(ValueError) as caught:
        Ours()
    assert explain(caught.value, _settings()) is None


def test_a_librdkafka_refusal_names_the_property_with_secret_values_masked() -> None:
    class KafkaException(Exception):  # noqa: N818 (librdkafka's name, as confluent-kafka raises it)
        pass

    error = KafkaException(f'Invalid value "{SECRET}" for configuration property "ssl.key.password"')
    got = explain(error, _settings())
    assert got is not None
    message, status = got
    assert status == EXIT_USAGE and SECRET not in message and "**********" in message
    assert "ssl.key.password" in message


@pytest.mark.parametrize("transport", ["kafka-python", "confluent-kafka"])
def test_a_number_property_given_as_text_is_refused_in_one_line_before_any_broker_is_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, transport: str
) -> None:
    """Both transports: `consume` probes with kafka-python first, which refuses it (was: a bootstrap timeout)."""
    from consumer.cli import main

    for name in [n for n in os.environ if n.startswith("STOCKWATCH_")]:
        monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))
    monkeypatch.setenv("STOCKWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("STOCKWATCH_KAFKA_CLIENT", transport)
    monkeypatch.setenv("STOCKWATCH_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("STOCKWATCH_HTTP_PORT", "0")
    monkeypatch.setenv(
        "STOCKWATCH_KAFKA_CLIENT_PROPERTIES",
        f'{{"request.timeout.ms": "abc", "ssl.key.password": "{SECRET}"}}',
    )
    for argv in (["consume", "--timeout", "5"], ["feedback", "a" * 32, "confirmed"]):
        assert main(argv) == EXIT_USAGE
        assert capsys.readouterr().err == (
            f"stockwatch {argv[0]}: a Kafka client refused its configuration (request.timeout.ms='abc' must be "
            "a number from -1 to 2147483647): check the values of STOCKWATCH_KAFKA_CLIENT_PROPERTIES\n"
        )
