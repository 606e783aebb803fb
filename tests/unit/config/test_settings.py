"""Settings: the issue's exact names and defaults, the precedence env > file > default, the slices."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import DEFAULT_CONFIG_FILE, Settings, SettingsError, TopicSettings, load_settings
from config.groups import Slice
from config.kafka_security import KafkaSecurity


def test_defaults_are_the_documented_ones() -> None:
    s = Settings()
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.mongo_uri == "mongodb://127.0.0.1:27017"
    assert (s.mongo_db, s.mongo_collection) == ("warehouse", "inventory")
    assert s.input_topic == "inventory.stock-updates"
    assert s.anomaly_topic == "inventory.anomalies"
    assert s.dlq_topic == "inventory.stock-updates.dlq"
    assert (s.control_topic, s.status_topic) == ("stockwatch.control", "stockwatch.status")
    assert s.group_id == "stockwatch-scorer"
    assert s.model_dir == Path("./models")


def test_environment_beats_file_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "sw.toml"
    cfg.write_text('group_id = "from-file"\ninput_topic = "file-topic"\n')
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(cfg))
    monkeypatch.setenv("STOCKWATCH_INPUT_TOPIC", "env-topic")
    s = Settings()
    assert s.group_id == "from-file"
    assert s.input_topic == "env-topic"
    assert s.anomaly_topic == "inventory.anomalies"


def test_unknown_keys_in_the_file_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "sw.toml"
    cfg.write_text('anomaly_topik = "typo"\n')
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(cfg))
    with pytest.raises(SettingsError, match="anomaly_topik"):
        Settings()


def test_input_topic_must_not_be_an_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKWATCH_ANOMALY_TOPIC", "inventory.stock-updates")
    with pytest.raises(ValidationError, match="must differ"):
        Settings()


def test_secrets_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKWATCH_MODEL_SIGNING_KEY", "hunter2-hunter2-hunter2-hunter2-hunter2")
    s = Settings()
    assert "hunter2" not in repr(s)
    assert s.model_signing_key is not None
    assert s.model_signing_key.get_secret_value() == "hunter2-hunter2-hunter2-hunter2-hunter2"


def test_shipped_config_file_matches_the_defaults() -> None:
    """config/stockwatch.toml documents the defaults: it must not drift from them."""
    shipped = tomllib.loads(DEFAULT_CONFIG_FILE.read_text())
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    for key, value in shipped.items():
        if key == "rules":  # the detector's built-in table (None here): tests/unit/config/test_rules.py
            continue
        want = defaults[key]
        got = Path(value) if isinstance(want, Path) else value
        assert got == want, key


def test_the_retrain_lease_outlives_a_slow_renewal() -> None:
    with pytest.raises(ValidationError, match="lease_ttl_s must be at least twice worker_mongo_timeout_s"):
        Settings(lease_ttl_s=9, worker_mongo_timeout_s=5)
    assert Settings().retrain.lease_ttl_s == 10.0  # short by default: a killed worker's lease lapses soon
    assert Settings(worker_id="worker-a.1").retrain.worker_id == "worker-a.1"
    with pytest.raises(ValidationError, match="worker_id"):
        Settings(worker_id="has space")


def test_confluent_client_limits_are_checked_up_front() -> None:
    with pytest.raises(ValidationError, match="max_poll_interval_ms >= session_timeout_ms"):
        Settings(kafka_client="confluent-kafka", max_poll_interval_ms=20_000, session_timeout_ms=45_000)
    Settings(kafka_client="kafka-python", max_poll_interval_ms=20_000, session_timeout_ms=45_000)
    with pytest.raises(ValidationError, match="max_poll_records"):
        Settings(max_poll_records=2_000_000)


def test_the_packaged_defaults_file_is_found_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_CONFIG_FILE.is_file()
    assert (
        DEFAULT_CONFIG_FILE.parent.name == "config" and (DEFAULT_CONFIG_FILE.parent / "__init__.py").is_file()
    )
    cfg = tmp_path / "stockwatch.toml"  # a file of that name in the working directory is not read
    cfg.write_text('group_id = "from-cwd"\n')
    assert Settings().group_id == "stockwatch-scorer"


def _slices() -> dict[str, type[Slice]]:
    return {
        name: type(getattr(Settings(), name))
        for name in (
            "kafka",
            "mongo",
            "models",
            "scoring",
            "http",
            "retrain",
            "gate",
            "control",
            "logs",
            "notify",
            "context",
        )
    }


def test_every_setting_is_in_exactly_one_slice_with_the_same_type() -> None:
    """The slices are views of the flat names: none is lost, none is shown twice, types agree."""
    seen: dict[str, str] = {}
    nested = [("kafka.topics", TopicSettings), ("kafka.security", KafkaSecurity)]
    for slice_name, kind in [*_slices().items(), *nested]:
        for name, field in kind.model_fields.items():
            if name in ("topics", "security"):
                continue
            flat = field.validation_alias or name
            assert isinstance(flat, str) and flat in Settings.model_fields, (slice_name, name)
            assert flat not in seen, f"{flat} in {seen.get(flat)} and {slice_name}"
            seen[flat] = slice_name
            assert field.annotation == Settings.model_fields[flat].annotation, (slice_name, name)
    assert sorted(seen) == sorted(Settings.model_fields)


def test_slices_are_frozen_and_follow_model_copy() -> None:
    s = Settings(group_id="a", kafka_bootstrap="b:1", mongo_db="m", retrain_batch_size=77)
    assert (s.kafka.group_id, s.kafka.bootstrap, s.mongo.db, s.retrain.batch_size) == ("a", "b:1", "m", 77)
    with pytest.raises(ValidationError):
        s.kafka.group_id = "x"  # type: ignore[misc]
    copy = s.model_copy(update={"group_id": "other"})
    assert copy.kafka.group_id == "other" and s.kafka.group_id == "a"


def test_the_mongo_password_is_not_in_reprs() -> None:
    s = Settings(mongo_uri="mongodb://app:s3cr3t-pw@db.example:27017/warehouse")
    for text in (repr(s), str(s), repr(s.mongo), str(s.mongo)):
        assert "s3cr3t-pw" not in text
    assert s.mongo.uri.endswith("@db.example:27017/warehouse")
    assert s.mongo.safe_uri == "mongodb://app:**********@db.example:27017/warehouse"


def test_observability_and_topic_sizing_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert (defaults.http.host, defaults.http.port, defaults.http.worker_port) == ("127.0.0.1", 9400, 9401)
    assert (defaults.kafka.topics.output_partitions, defaults.kafka.topics.replication_factor) == (0, 1)
    monkeypatch.setenv("STOCKWATCH_WORKER_HTTP_PORT", "9501")
    monkeypatch.setenv("STOCKWATCH_OUTPUT_PARTITIONS", "12")
    monkeypatch.setenv("STOCKWATCH_REPLICATION_FACTOR", "3")
    s = Settings()
    assert (s.http.worker_port, s.kafka.topics.output_partitions, s.kafka.topics.replication_factor) == (
        9501,
        12,
        3,
    )
    for bad in ({"replication_factor": 0}, {"output_partitions": -1}, {"worker_http_port": 70000}):
        with pytest.raises(ValidationError):
            Settings(**bad)


def test_the_state_changelog_template_names_only_known_fields() -> None:
    settings = Settings(group_id="g", input_topic="in", state_changelog_topic="{group_id}-{input_topic}-st")
    assert settings.scoring.state_changelog_topic == "{group_id}-{input_topic}-st"
    assert settings.scoring.state_seed == "snapshot"
    for bad in ("{group}.state", "{0}.state", "{group_id", " "):
        with pytest.raises(ValidationError, match="state_changelog_topic"):
            Settings(state_changelog_topic=bad)
    with pytest.raises(ValidationError, match="state_seed"):
        Settings(state_seed="always")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["{group_id.__class__}", "{input_topic[0]}.st", "{group_id!r}", "{group_id:>9}", "{}"]
)
def test_the_changelog_template_refuses_attribute_index_conversion_and_spec(bad: str) -> None:
    with pytest.raises(ValidationError, match="state_changelog_topic") as caught:
        Settings(state_changelog_topic=bad)
    assert "group_id" in str(caught.value)  # the message says what is allowed


def test_the_changelog_template_keeps_literal_text_and_escaped_braces() -> None:
    template = "{{x}}.{group_id}.{input_topic}-st"
    assert Settings(state_changelog_topic=template).scoring.state_changelog_topic == template


@pytest.mark.parametrize(
    "field", ["input_topic", "anomaly_topic", "dlq_topic", "decisions_topic", "feedback_topic"]
)
@pytest.mark.parametrize("bad", ["bad topic!", "", "..", "t" * 250, "é"])
def test_a_topic_kafka_would_refuse_is_refused_at_start_up(field: str, bad: str) -> None:
    if field == "decisions_topic" and bad == "":
        assert Settings(decisions_topic="").decisions_topic == ""  # "" leaves the decisions topic off
        return
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: bad})


def test_an_empty_tls_file_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """It was the directory ".", so PLAINTEXT was refused as 'TLS files are given'."""
    for name in ("CAFILE", "CERTFILE", "KEYFILE"):
        monkeypatch.setenv(f"STOCKWATCH_KAFKA_SSL_{name}", "")
    settings = load_settings()
    assert (settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile) == (
        None,
        None,
        None,
    )
