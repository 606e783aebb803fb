"""Kafka security settings: every derived client config carries them, mistakes are one line, secrets stay hidden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config import Settings, SettingsError, load_settings
from config.kafka import RESERVED_PROPERTIES
from consumer.cli import main

PASSWORD = "sasl-pass-word-1234"


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def sasl_env(monkeypatch: pytest.MonkeyPatch, pem: Path, **more: str) -> None:
    values = {
        "STOCKWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STOCKWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "STOCKWATCH_KAFKA_SASL_USERNAME": "svc",
        "STOCKWATCH_KAFKA_SASL_PASSWORD": PASSWORD,
        "STOCKWATCH_KAFKA_SSL_CAFILE": str(pem),
        **more,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def problems(monkeypatch: pytest.MonkeyPatch, **variables: str) -> list[str]:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    return raised.value.problems


def test_plaintext_by_default_and_nothing_else() -> None:
    config = Settings().kafka.client_config(client_id="x")
    assert config["security.protocol"] == "PLAINTEXT"
    assert not [k for k in config if k.startswith(("sasl.", "ssl."))]


def test_every_derived_config_carries_the_security_settings(
    monkeypatch: pytest.MonkeyPatch, pem: Path
) -> None:
    sasl_env(monkeypatch, pem, STOCKWATCH_KAFKA_CLIENT_PROPERTIES='{"compression.type": "zstd"}')
    kafka = load_settings().kafka
    want = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(pem),
        "ssl.endpoint.identification.algorithm": "https",
        "compression.type": "zstd",
    }
    for config in (
        kafka.client_config(client_id="a"),
        kafka.consumer_config(client_id="b"),
        kafka.producer_config(client_id="c"),
        kafka.transactional_producer_config(client_id="d"),
    ):
        assert {k: config.get(k) for k in want} == want


def test_hostname_check_off_and_mutual_tls(monkeypatch: pytest.MonkeyPatch, pem: Path) -> None:
    monkeypatch.setenv("STOCKWATCH_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("STOCKWATCH_KAFKA_SSL_CERTFILE", str(pem))
    monkeypatch.setenv("STOCKWATCH_KAFKA_SSL_KEYFILE", str(pem))
    monkeypatch.setenv("STOCKWATCH_KAFKA_SSL_CHECK_HOSTNAME", "false")
    config = load_settings().kafka.client_config(client_id="x")
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    assert config["ssl.certificate.location"] == config["ssl.key.location"] == str(pem)
    assert "sasl.mechanism" not in config and "ssl.ca.location" not in config


def test_sasl_without_credentials_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = problems(monkeypatch, STOCKWATCH_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT")
    assert "needs kafka_sasl_mechanism, kafka_sasl_username, kafka_sasl_password" in line
    assert "env STOCKWATCH_KAFKA_SECURITY_PROTOCOL" not in line  # the missing ones are the defaults
    assert "kafka_sasl_password: default" in line


def test_credentials_without_sasl_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = problems(monkeypatch, STOCKWATCH_KAFKA_SASL_PASSWORD=PASSWORD)
    assert "SASL settings are given but kafka_security_protocol is PLAINTEXT" in line
    assert PASSWORD not in line


def test_a_missing_tls_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    (line,) = problems(
        monkeypatch, STOCKWATCH_KAFKA_SECURITY_PROTOCOL="SSL", STOCKWATCH_KAFKA_SSL_CAFILE=str(missing)
    )
    assert f"kafka_ssl_cafile names {missing}, which is not a readable file" in line
    assert "env STOCKWATCH_KAFKA_SSL_CAFILE" in line


def test_an_unknown_mechanism_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = problems(monkeypatch, STOCKWATCH_KAFKA_SASL_MECHANISM="GSSAPI")
    assert line.startswith("STOCKWATCH_KAFKA_SASL_MECHANISM:")


@pytest.mark.parametrize("key", sorted(RESERVED_PROPERTIES))
def test_client_properties_may_not_override_what_stockwatch_sets(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    (line,) = problems(monkeypatch, STOCKWATCH_KAFKA_CLIENT_PROPERTIES=json.dumps({key: "x"}))
    assert f"kafka_client_properties: {key} is set by StockWatch itself" in line


@pytest.mark.parametrize("key", ["Compression.Type", "compression_type", "a..b", "{x}", "compression.type\n"])
def test_client_property_names_are_checked(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    (line,) = problems(monkeypatch, STOCKWATCH_KAFKA_CLIENT_PROPERTIES=json.dumps({key: 1}))
    assert "is not a client property name" in line


def test_client_properties_from_a_toml_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "sw.toml"
    cfg.write_text('[kafka_client_properties]\n"compression.type" = "lz4"\n"socket.timeout.ms" = 5000\n')
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(cfg))
    config = load_settings().kafka.producer_config(client_id="x")
    assert (config["compression.type"], config["socket.timeout.ms"]) == ("lz4", 5000)


def test_stockwatch_config_masks_the_password_and_secret_properties(
    monkeypatch: pytest.MonkeyPatch, pem: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sasl_env(
        monkeypatch,
        pem,
        STOCKWATCH_KAFKA_CLIENT_PROPERTIES='{"ssl.key.password": "key-pass-5678", "compression.type": "zstd"}',
    )
    for args in (["config"], ["config", "--json"]):
        assert main(args) == 0
        out, err = capsys.readouterr()
        assert PASSWORD not in out + err and "key-pass-5678" not in out + err
        assert "SCRAM-SHA-512" in out and "compression.type=zstd" in out
    settings = load_settings()
    assert PASSWORD not in repr(settings) and PASSWORD not in repr(settings.kafka)


def test_an_invalid_property_value_does_not_echo_it(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = problems(monkeypatch, STOCKWATCH_KAFKA_CLIENT_PROPERTIES='{"ssl.key.password": ["s3cr3t"]}')
    assert lines and all(line.startswith("STOCKWATCH_KAFKA_CLIENT_PROPERTIES") for line in lines)
    assert not [line for line in lines if "s3cr3t" in line]


def test_client_properties_that_are_not_json_are_one_line_without_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = problems(monkeypatch, STOCKWATCH_KAFKA_CLIENT_PROPERTIES="ssl.key.password=s3cr3t")
    assert lines == ["STOCKWATCH_KAFKA_CLIENT_PROPERTIES: is not valid JSON"]


@pytest.mark.parametrize(
    "key",
    ["ssl.key.pem", "sasl.oauthbearer.config", "ssl.keystore.password", "sasl.oauthbearer.client.secret"],
)
def test_stockwatch_config_masks_a_private_key_and_oauth_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    monkeypatch.setenv(
        "STOCKWATCH_KAFKA_CLIENT_PROPERTIES", json.dumps({key: "-----BEGIN PRIVATE KEY-----s3cr3t"})
    )
    for args in (["config"], ["config", "--json"]):
        assert main(args) == 0
        out, err = capsys.readouterr()
        assert "s3cr3t" not in out + err and f"{key}=**********" in out
