"""Each transport's spelling of the security settings and client properties (no broker needed)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from config import Settings
from consumer.adapters.confluent.source import consumer_config, librdkafka_config
from consumer.adapters.kafka.client_config import kafka_python_config
from consumer.adapters.kafka.connect import client_kwargs
from consumer.ports import ClientPropertyError


def secured(tmp_path: Path, **more: object) -> Settings:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    return Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="svc",
        kafka_sasl_password="pw-0123456789",
        kafka_ssl_cafile=ca,
        kafka_ssl_check_hostname=False,
        **more,  # type: ignore[arg-type]
    )


def test_kafka_python_keywords(tmp_path: Path) -> None:
    kafka = secured(tmp_path).kafka
    for client in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        kw = client_kwargs(kafka, client, client_id="c")
        assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-256"
        assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("svc", "pw-0123456789")
        assert kw["ssl_cafile"] == str(tmp_path / "ca.pem") and kw["ssl_check_hostname"] is False
        assert set(kw) <= set(client.DEFAULT_CONFIG), set(kw) - set(client.DEFAULT_CONFIG)


def test_kafka_python_gives_a_property_only_to_clients_that_have_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = secured(
        tmp_path, kafka_client_properties={"compression.type": "gzip", "ssl.key.password": "k"}
    ).kafka
    producer = kafka_python_config(kafka.producer_config(client_id="p"), KafkaProducer)
    assert producer["compression_type"] == "gzip" and producer["ssl_password"] == "k"
    with caplog.at_level(logging.WARNING):
        consumer = kafka_python_config(kafka.consumer_config(client_id="c"), KafkaConsumer)
    assert "compression_type" not in consumer and consumer["ssl_password"] == "k"
    assert "KafkaConsumer has no property compression.type" in caplog.text


def test_librdkafka_takes_the_names_as_they_are(tmp_path: Path) -> None:
    kafka = secured(tmp_path, kafka_client_properties={"compression.type": "gzip"}).kafka
    config = consumer_config(kafka, client_id="c")
    assert config["sasl.mechanism"] == "SCRAM-SHA-256" and config["sasl.username"] == "svc"
    assert config["ssl.ca.location"] == str(tmp_path / "ca.pem")
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    assert librdkafka_config(kafka.producer_config(client_id="p"))["compression.type"] == "gzip"
    from confluent_kafka import Consumer, Producer

    def offline(config: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in config.items() if k != "ssl.ca.location"}  # the CA file is a stub

    Consumer(offline(config)).close()  # librdkafka refuses names it does not know: these it knows
    Producer(offline(librdkafka_config(kafka.producer_config(client_id="p"))))


def test_what_a_client_needs_wins_over_a_client_property_of_the_same_name(tmp_path: Path) -> None:
    kafka = secured(
        tmp_path, kafka_client_properties={"request.timeout.ms": 99, "metadata.max.age.ms": 7}
    ).kafka
    kw = client_kwargs(kafka, KafkaProducer, client_id="p", request_timeout_ms=5000)
    assert kw["request_timeout_ms"] == 5000 and kw["metadata_max_age_ms"] == 7
    assert client_kwargs("127.0.0.1:1", KafkaConsumer, client_id="c", group_id=None) == {
        "bootstrap_servers": "127.0.0.1:1",
        "client_id": "c",
        "group_id": None,
    }


@pytest.mark.parametrize("timeout_s", [5, 130, 600])
def test_any_ctl_timeout_gives_a_producer_config_kafka_python_accepts(timeout_s: float) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaConfigurationError, KafkaTimeoutError

    from consumer.adapters.kafka.topics import client_timeouts

    config = client_timeouts(timeout_s) | {"bootstrap_timeout_ms": 300}  # nothing listens: fail fast
    with pytest.raises(KafkaTimeoutError):  # the config passed its checks; only the broker is missing
        KafkaProducer(bootstrap_servers="127.0.0.1:1", **config)
    assert not issubclass(KafkaTimeoutError, KafkaConfigurationError)


@pytest.mark.parametrize(
    "value",
    ["abc", "12x", "", "nan", True, "1e9", "5_000", "\u0665\u0660\u0660\u0660", -2, 10**30, 1e308, "-5"],
)
def test_kafka_python_refuses_a_number_property_given_as_anything_else(tmp_path: Path, value: object) -> None:
    """As given, kafka-python took 'abc' and only failed later, its bootstrap timing out."""
    kafka = secured(tmp_path, kafka_client_properties={"request.timeout.ms": value}).kafka
    for client in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        with pytest.raises(
            ClientPropertyError, match=r"^request\.timeout\.ms=.* must be a number from -1 to 2147483647$"
        ):
            client_kwargs(kafka, client, client_id="c")


def test_kafka_python_takes_a_number_property_given_as_text_as_the_number(tmp_path: Path) -> None:
    properties = {"request.timeout.ms": "45000", "retry.backoff.ms": 250, "compression.type": "gzip",
                  "metadata.max.age.ms": "-1"}  # fmt: skip
    kafka = secured(tmp_path, kafka_client_properties=properties).kafka
    kw = kafka_python_config(kafka.producer_config(client_id="p"), KafkaProducer)
    assert (kw["request_timeout_ms"], kw["retry_backoff_ms"], kw["compression_type"]) == (45000, 250, "gzip")
    assert kw["metadata_max_age_ms"] == -1


def test_the_state_restore_reader_refuses_a_property_librdkafka_refuses_as_a_setting(tmp_path: Path) -> None:
    """Retried as an outage, consume logged 'could not read ...state' without end."""
    from consumer.adapters.confluent.changelog import ConfluentChangelog

    kafka = secured(tmp_path, kafka_client_properties={"topic.metadata.refresh.interval.ms": -5}).kafka
    with pytest.raises(ClientPropertyError, match=r"topic\.metadata\.refresh\.interval\.ms"):
        ConfluentChangelog(kafka, "in.state").read(0)
