"""The bench's Kafka clients take the service's security settings (config/kafka.py), both transports."""

from __future__ import annotations

import os

import pytest
from kafka import KafkaConsumer, KafkaProducer

from bench import common


@pytest.fixture(autouse=True)
def _sasl_settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))
    monkeypatch.setenv("STOCKWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("STOCKWATCH_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("STOCKWATCH_KAFKA_SASL_USERNAME", "bench")
    monkeypatch.setenv("STOCKWATCH_KAFKA_SASL_PASSWORD", "bench-secret-password")
    common.security_config.cache_clear()
    yield
    common.security_config.cache_clear()


def test_kafka_python_clients_get_the_security_settings_and_explicit_values_win() -> None:
    kw = common.kafka_kwargs(KafkaProducer, bootstrap_servers="b:9092", acks=1)
    assert kw["security_protocol"] == "SASL_PLAINTEXT" and kw["sasl_mechanism"] == "SCRAM-SHA-256"
    assert kw["sasl_plain_username"] == "bench" and kw["acks"] == 1 and kw["bootstrap_servers"] == "b:9092"
    assert common.kafka_kwargs(KafkaConsumer)["security_protocol"] == "SASL_PLAINTEXT"


def test_confluent_clients_get_the_same_properties() -> None:
    conf = common.librdkafka_conf({"bootstrap.servers": "b:9092", "acks": 1})
    assert conf["security.protocol"] == "SASL_PLAINTEXT" and conf["sasl.username"] == "bench"
    assert conf["bootstrap.servers"] == "b:9092" and "client.id" not in conf
