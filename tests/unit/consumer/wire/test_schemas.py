"""The committed JSON Schemas: up to date with the models, complete, and strict about what they accept."""

from __future__ import annotations

from datetime import UTC, datetime

import jsonschema
import orjson
import pytest

from consumer.wire.control import new_command
from consumer.wire.schemas import SCHEMA_DIR, SCHEMAS, AnomalyEvent, DecisionEvent, render_schemas
from tests.schemas import validate, validator


def test_committed_schema_files_are_up_to_date() -> None:
    """docs/schemas/*.schema.json must equal what the models generate (`python -m consumer.wire.schemas`)."""
    rendered = render_schemas()
    for name, data in rendered.items():
        path = SCHEMA_DIR / name
        assert path.exists(), f"{path} missing: run python -m consumer.wire.schemas"
        assert path.read_bytes() == data, f"{path} is stale: run python -m consumer.wire.schemas"
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json")) == sorted(rendered)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    assert validator(name).META_SCHEMA["$id"].startswith("https://json-schema.org/draft/2020-12/")


def test_schema_names_every_documented_field() -> None:
    schema = orjson.loads((SCHEMA_DIR / "anomaly-event.schema.json").read_bytes())
    for field in (
        "anomaly_id",
        "item_id",
        "event_id",
        "item",
        "features",
        "score",
        "threshold",
        "severity",
        "reasons",
        "model_version",
        "source",
        "detected_at",
    ):
        assert field in schema["properties"], field
    features = schema["$defs"]["Features"]["required"]
    assert len(features) == 7


def test_event_models_reject_unknown_fields() -> None:
    with pytest.raises(ValueError, match="extra"):
        DecisionEvent.model_validate({"surprise": 1})
    assert AnomalyEvent.model_fields["is_anomaly"].default is True


def test_a_signed_command_fits_the_control_schema_and_an_unsigned_one_does_not() -> None:
    cmd = new_command("rollback", b"k", args={"version": "v1"}, now=datetime(2026, 11, 25, tzinfo=UTC))
    wire = orjson.loads(cmd.to_json())
    validate("control-command", wire)
    for bad in ({**wire, "signature": None}, {**wire, "command": "format-disk"}, {**wire, "extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            validate("control-command", bad)


def test_status_schema_tells_message_types_apart() -> None:
    ack = {"type": "command_ack", "status": "done", "command_id": "c1", "command": "status", "worker": "w",
           "result": {}, "at": "2026-11-25T18:00:00+00:00"}  # fmt: skip
    validate("status-message", ack)
    validate("status-message", {"type": "model_published", "version": "v", "trigger": {}, "command_id": None,
                                "at": "2026-11-25T18:00:00+00:00"})  # fmt: skip
    for bad in (
        ack | {"type": "gossip"},
        ack | {"status": "maybe"},
        ack | {"at": "yesterday"},
        {"type": "command_ack"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate("status-message", bad)
