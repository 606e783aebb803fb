"""User mistakes in settings: each is one line naming what was written where, never a secret's value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config import Settings, SettingsError, load_settings
from config.groups import mask_uri
from consumer.cli import main

SECRETS = ("hunter2-key", "sign-me-secret", "mongo-pass-word")


def problems(env: pytest.MonkeyPatch, **variables: str) -> list[str]:
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    return raised.value.problems


def toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sw.toml"
    path.write_text(text)
    return str(path)


def test_config_naming_a_missing_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.toml"
    assert problems(monkeypatch, STOCKWATCH_CONFIG=str(missing)) == [
        f"STOCKWATCH_CONFIG names {missing}, which does not exist"
    ]


def test_config_naming_an_unreadable_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (found,) = problems(monkeypatch, STOCKWATCH_CONFIG=str(tmp_path))  # a directory
    assert found.startswith(f"cannot read the config file {tmp_path}")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'group_id = "\xff\xfe"\n')
    (found,) = problems(monkeypatch, STOCKWATCH_CONFIG=str(binary))
    assert found.startswith(f"cannot read the config file {binary}")


def test_toml_syntax_errors_name_the_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = toml(tmp_path, 'group_id = "ok"\ncontrol_key = "hunter2-key\nmodel_keep = 3\n')
    (found,) = problems(monkeypatch, STOCKWATCH_CONFIG=path)
    assert found.startswith(f"invalid TOML in {path}, line 2")
    assert "hunter2-key" not in found


def test_unknown_keys_in_the_file_suggest_the_closest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = toml(tmp_path, 'anomaly_topik = "x"\nzzz = 1\n')
    assert problems(monkeypatch, STOCKWATCH_CONFIG=path) == [
        f"unknown key anomaly_topik in {path} (did you mean anomaly_topic?)",
        f"unknown key zzz in {path}",
    ]


def test_unknown_environment_variables_suggest_the_closest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(monkeypatch, STOCKWATCH_MAX_POL_RECORDS="10", STOCKWATCH_KAFKA_BOOTSTRAPS="b:1")
    assert found == [
        "unknown environment variable STOCKWATCH_KAFKA_BOOTSTRAPS (did you mean STOCKWATCH_KAFKA_BOOTSTRAP?)",
        "unknown environment variable STOCKWATCH_MAX_POL_RECORDS (did you mean STOCKWATCH_MAX_POLL_RECORDS?)",
    ]


def test_unknown_variables_and_file_problems_are_reported_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(monkeypatch, STOCKWATCH_CONFIG=str(tmp_path / "nope.toml"), STOCKWATCH_GROUPID="g")
    assert len(found) == 2
    assert "STOCKWATCH_GROUPID" in found[0] and "STOCKWATCH_CONFIG" in found[1]


def test_unknown_names_and_invalid_values_are_reported_in_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = toml(tmp_path, 'max_poll_recordz = 5\nmax_poll_records = "x"\ncontrol_key = 7\n')
    found = problems(
        monkeypatch, STOCKWATCH_CONFIG=path, STOCKWATCH_GROUPID="g", STOCKWATCH_POLL_TIMEOUT_MS="abc"
    )
    assert found[:2] == [
        "unknown environment variable STOCKWATCH_GROUPID (did you mean STOCKWATCH_GROUP_ID?)",
        f"unknown key max_poll_recordz in {path} (did you mean max_poll_records?)",
    ]
    assert sorted(p.split(":")[0] for p in found[2:]) == [
        "STOCKWATCH_POLL_TIMEOUT_MS",
        f"control_key in {path}",
        f"max_poll_records in {path}",
    ]


def test_the_variables_of_the_stack_and_the_build_are_not_settings_but_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("STOCKWATCH_CACHE_DIR", "STOCKWATCH_PYTHON", "STOCKWATCH_STACK_KAFKA_PORT"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("STOCKWATCH_STACK_FERRETDB_GOGC", "100")
    monkeypatch.setenv("STOCKWATCH_CONFIG", toml(tmp_path, ""))
    assert load_settings().group_id == "stockwatch-scorer"


def test_the_settings_model_refuses_unknown_variables_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKWATCH_INPUT_TOPK", "t")
    with pytest.raises(SettingsError, match="STOCKWATCH_INPUT_TOPIC"):
        Settings()


def test_invalid_values_name_the_variable_they_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    found = problems(monkeypatch, STOCKWATCH_MAX_POLL_RECORDS="2000000", STOCKWATCH_DELIVERY="exactly-one")
    assert found[0].startswith("STOCKWATCH_DELIVERY: ") and "(got 'exactly-one')" in found[0]
    assert found[1].startswith("STOCKWATCH_MAX_POLL_RECORDS: Input should be less than or equal to 1000000")


def test_invalid_values_name_the_key_and_file_they_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = toml(tmp_path, "max_poll_records = 0\n")
    (found,) = problems(monkeypatch, STOCKWATCH_CONFIG=path)
    assert found.startswith(f"max_poll_records in {path}: Input should be greater than or equal to 1")


def test_cross_field_conflicts_say_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = toml(tmp_path, "max_poll_interval_ms = 20000\n")
    (found,) = problems(monkeypatch, STOCKWATCH_CONFIG=path, STOCKWATCH_KAFKA_CLIENT="confluent-kafka")
    assert "max_poll_interval_ms >= session_timeout_ms" in found
    assert "kafka_client: env STOCKWATCH_KAFKA_CLIENT" in found
    assert f"max_poll_interval_ms: {path}" in found and "session_timeout_ms: default" in found


def test_invalid_secrets_are_named_but_their_values_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = toml(
        tmp_path,
        'control_key = ["hunter2-key"]\n'
        'model_signing_key = { key = "sign-me-secret" }\n'
        'mongo_uri = { uri = "mongodb://u:mongo-pass-word@h" }\n',
    )
    found = problems(monkeypatch, STOCKWATCH_CONFIG=path)
    assert [line.split(":")[0] for line in found] == [
        f"mongo_uri in {path}",
        f"model_signing_key in {path}",
        f"control_key in {path}",
    ]
    assert not any(secret in line for line in found for secret in SECRETS)


def test_the_mongo_password_is_masked_in_errors_about_other_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    found = problems(
        monkeypatch,
        STOCKWATCH_MONGO_URI="mongodb://app:mongo-pass-word@h:27017",
        STOCKWATCH_INPUT_TOPIC="inventory.anomalies",
        STOCKWATCH_CONTROL_KEY="hunter2-key",
        STOCKWATCH_MODEL_KEEP="zero",
    )
    assert any("STOCKWATCH_MODEL_KEEP" in line for line in found)
    assert not any(secret in line for line in found for secret in SECRETS)


def test_the_cli_prints_one_line_per_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKWATCH_CONFIG", toml(tmp_path, 'control_key = 5\nmodel_keep = "many"\n'))
    monkeypatch.setenv("STOCKWATCH_MONGO_URI", "mongodb://app:mongo-pass-word@h")
    monkeypatch.setenv("STOCKWATCH_SESSION_TIMEOUT_MS", "soon")
    assert main(["config"]) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 3 and all(line.startswith("stockwatch: ") for line in lines)
    assert "STOCKWATCH_SESSION_TIMEOUT_MS" in err and "control_key in" in err and "model_keep in" in err
    assert "Traceback" not in err and "input_value" not in err and "mongo-pass-word" not in err


def test_config_naming_a_fifo_is_refused_instead_of_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(fifo))
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert raised.value.problems == [f"the config file {fifo} is not a regular file"]


@pytest.mark.parametrize(
    "option",
    ["authMechanismProperties=AWS_SESSION_TOKEN:tok-secret-9", "tlsCertificateKeyFilePassword=tok-secret-9"],
)
def test_credentials_in_mongo_uri_options_are_masked(option: str) -> None:
    masked = mask_uri(f"mongodb://u:pw-secret-8@db:27017/?authMechanism=MONGODB-AWS&{option}&w=1")
    assert "tok-secret-9" not in masked and "pw-secret-8" not in masked
    assert masked.startswith(
        "mongodb://u:**********@db:27017/?authMechanism=MONGODB-AWS&"
    ) and masked.endswith("&w=1")


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("STOCKWATCH_RESOLVE_AFTER", "70000", "less than or equal to"),
        ("STOCKWATCH_RENOTIFY_AFTER_S", "1e12", "less than or equal to"),
        ("STOCKWATCH_RENOTIFY_AFTER_S", "inf", "a finite number"),
    ],
)
def test_alert_settings_beyond_what_an_episode_can_count_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    (found,) = problems(monkeypatch, **{variable: value})
    assert found.startswith(f"{variable}: Input should be {says}")


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity"])
def test_no_setting_takes_an_infinite_or_nan_number(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """inf would switch a bound off (future_skew_s: the far-future guard), and nan compares False."""
    (found,) = problems(monkeypatch, STOCKWATCH_FUTURE_SKEW_S=value)
    assert found.startswith("STOCKWATCH_FUTURE_SKEW_S: Input should be a finite number")


def test_a_changelog_template_reaching_into_a_field_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (found,) = problems(monkeypatch, STOCKWATCH_STATE_CHANGELOG_TOPIC="{group_id.__class__}.st")
    assert found == (
        "STOCKWATCH_STATE_CHANGELOG_TOPIC: {group_id.__class__} is not allowed: only bare {group_id} "
        "and {input_topic} are replaced (got '{group_id.__class__}.st')"
    )


@pytest.mark.parametrize(
    ("template", "clash"),
    [
        ("{input_topic}", "input_topic"),
        ("{input_topic}.dlq", "dlq_topic"),
        ("stockwatch.control", "control_topic"),
        (".", None),
        ("..", None),
    ],
)
def test_a_changelog_template_naming_another_topic_or_no_topic_is_refused(
    monkeypatch: pytest.MonkeyPatch, template: str, clash: str | None
) -> None:
    """'{input_topic}' made consume read its own state records as updates, without end."""
    (found,) = problems(monkeypatch, STOCKWATCH_STATE_CHANGELOG_TOPIC=template)
    assert (
        found.startswith("state_changelog_topic names ") and "env STOCKWATCH_STATE_CHANGELOG_TOPIC" in found
    )
    assert (f"which is also {clash}" if clash else "which Kafka refuses as a topic name") in found
    assert "\n" not in found


@pytest.mark.parametrize(
    ("db", "says"),
    [
        ("bad db", "is ASCII letters, digits, '_' and '-' only (not ' ')"),
        ("shop.eu", "is ASCII letters, digits, '_' and '-' only (not '.')"),
        ("a$b:c", "is ASCII letters, digits, '_' and '-' only (not '$:')"),
        ("caf\u00e9", "is ASCII letters, digits, '_' and '-' only (not '\\xe9')"),
        ("a\nb", "is ASCII letters, digits, '_' and '-' only (not '\\n')"),
        ("", "must name a database"),
        ("d" * 64, "is at most 63 bytes"),
    ],
)
def test_a_database_name_mongo_would_refuse_is_refused_when_settings_are_read(
    monkeypatch: pytest.MonkeyPatch, db: str, says: str
) -> None:
    (found,) = problems(monkeypatch, STOCKWATCH_MONGO_DB=db)
    assert found.startswith(f"STOCKWATCH_MONGO_DB: {'a MongoDB database name ' if db else ''}{says}")


def test_a_bad_database_name_exits_2_in_one_line_without_the_uri_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"item_id": "a"}\n')
    monkeypatch.setenv("STOCKWATCH_MONGO_URI", "mongodb://app:mongo-pass-word@127.0.0.1:9")
    monkeypatch.setenv("STOCKWATCH_MONGO_DB", "shop.eu")
    assert main(["seed", "--items", str(items)]) == 2  # refused before any connection (port 9)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("stockwatch: STOCKWATCH_MONGO_DB: ") and "mongo-pass-word" not in line
    assert Settings(mongo_db="shop_eu-2").mongo.db == "shop_eu-2"


@pytest.mark.parametrize(("value", "kind"), [("null", "NoneType"), ("[1]", "list"), ('{"a": 1}', "dict")])
def test_a_client_property_that_is_no_text_number_or_boolean_is_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str, kind: str
) -> None:
    (found,) = problems(monkeypatch, STOCKWATCH_KAFKA_CLIENT_PROPERTIES=f'{{"request.timeout.ms": {value}}}')
    assert found.startswith(
        "STOCKWATCH_KAFKA_CLIENT_PROPERTIES: the value of 'request.timeout.ms' must be text, a number or "
        f"true/false (got {kind})"
    )


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("STOCKWATCH_MONGO_COLLECTION", "", "must name a collection"),
        ("STOCKWATCH_MONGO_COLLECTION", "inv$entory", "a MongoDB collection name cannot contain '$' or NUL"),
        ("STOCKWATCH_RETRAIN_FLAGGED_COLLECTION", "system.users", "names starting with 'system.' are"),
        ("STOCKWATCH_MONGO_COLLECTION", "c" * 191, "a MongoDB collection name is at most 190 bytes"),
    ],
)
def test_a_collection_name_mongo_would_refuse_is_refused_when_settings_are_read(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    (found,) = problems(monkeypatch, **{variable: value})
    assert found.startswith(f"{variable}: {says}")
