"""`stockwatch feedback` and `notify` connect with the Kafka security settings, not the bare address."""

from __future__ import annotations

import time
from typing import Any

import pytest

import consumer.adapters.kafka as kafka_adapters
from config import KafkaSettings
from consumer.cli import main
from consumer.ports import KafkaUnavailableError

PASSWORD = "sasl-pass-word-1234"


@pytest.fixture(autouse=True)
def _sasl_settings(no_broker: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("STOCKWATCH_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("STOCKWATCH_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("STOCKWATCH_KAFKA_SASL_PASSWORD", PASSWORD)


def _recording(brokers: list[Any]) -> Any:
    def connect(broker: Any, *args: Any, **kwargs: Any) -> Any:
        brokers.append(broker)
        raise KafkaUnavailableError("stopped here by the test")

    return connect


def _probed(brokers: list[Any]) -> Any:
    def probe(broker: Any, **kwargs: Any) -> set[str]:
        brokers.append(broker)
        return set()

    return probe


def _sasl(broker: Any) -> bool:
    return isinstance(broker, KafkaSettings) and broker.security.protocol == "SASL_PLAINTEXT"


def test_feedback_connects_with_the_security_settings(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    brokers: list[Any] = []
    monkeypatch.setattr(kafka_adapters, "existing_topics", _probed(brokers))
    monkeypatch.setattr(kafka_adapters, "ensure_worker_topics", _recording(brokers))
    assert main(["feedback", "a" * 32, "confirmed"]) == 1
    assert len(brokers) == 2 and all(_sasl(b) for b in brokers)  # the probe, then the client
    assert PASSWORD not in capsys.readouterr().err


def test_notify_connects_with_the_security_settings(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    brokers: list[Any] = []
    monkeypatch.setattr(kafka_adapters, "existing_topics", _probed(brokers))
    monkeypatch.setattr(kafka_adapters, "GroupFeed", _recording(brokers))
    assert main(["notify", "--webhook", "http://127.0.0.1:1/hook"]) == 1
    assert len(brokers) == 2 and all(_sasl(b) for b in brokers)  # the probe, then the client
    assert PASSWORD not in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["feedback", "a" * 32, "confirmed"], ["notify", "--webhook", "http://127.0.0.1:1/hook"]]
)
def test_an_unreachable_sasl_broker_fails_within_the_bootstrap_timeout_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, argv: list[str]
) -> None:
    """As `consume`: not kafka-python's 30 s of retries, and the line names the SASL settings."""
    monkeypatch.setenv("STOCKWATCH_KAFKA_BOOTSTRAP_TIMEOUT_S", "1")
    started = time.monotonic()
    assert main(argv) == 1
    assert time.monotonic() - started < 8
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"stockwatch {argv[0]}: cannot reach Kafka at 127.0.0.1:1 (STOCKWATCH_KAFKA_BOOTSTRAP)"
    )
    assert "STOCKWATCH_KAFKA_SASL_USERNAME (svc, PLAIN)" in line and "STOCKWATCH_KAFKA_SASL_PASSWORD" in line
    assert PASSWORD not in line
