"""Event format: deterministic anomaly ids, committed JSON Schemas, dead-letter record contents."""

from __future__ import annotations

from collections import namedtuple

import orjson
import pytest

from consumer.scoring.batch import BatchConfig, validate_records
from consumer.wire.events import (
    SCHEMA_DIR,
    AnomalyEvent,
    DecisionEvent,
    DlqReason,
    anomaly_id,
    dlq_headers,
    render_schemas,
)

Rec = namedtuple("Rec", "topic partition offset timestamp key value headers")
CONFIG = BatchConfig(anomaly_topic="out", dlq_topic="dlq", max_message_bytes=1024)


def test_anomaly_id_is_deterministic_and_distinguishes_its_inputs() -> None:
    a = anomaly_id("inventory.stock-updates", 3, 1234, "20261125T180102Z-1a2b3c4d")
    assert a == anomaly_id("inventory.stock-updates", 3, 1234, "20261125T180102Z-1a2b3c4d")
    assert len(a) == 32 and int(a, 16) >= 0
    others = {
        anomaly_id("inventory.stock-updates", 4, 1234, "20261125T180102Z-1a2b3c4d"),
        anomaly_id("inventory.stock-updates", 3, 1235, "20261125T180102Z-1a2b3c4d"),
        anomaly_id("inventory.stock-updates", 3, 1234, "20261125T180102Z-00000000"),
        anomaly_id("other", 3, 1234, "20261125T180102Z-1a2b3c4d"),
        anomaly_id("inventory.stock-updates", 31, 234, "20261125T180102Z-1a2b3c4d"),  # no concatenation clash
    }
    assert a not in others and len(others) == 5


def test_committed_schema_files_are_up_to_date() -> None:
    """docs/schemas/*.schema.json must equal what the models generate (`python -m consumer.wire.events`)."""
    for name, data in render_schemas().items():
        path = SCHEMA_DIR / name
        assert path.exists(), f"{path} missing: run python -m consumer.wire.events"
        assert path.read_bytes() == data, f"{path} is stale: run python -m consumer.wire.events"


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


def _headers(record_headers: list[tuple[str, bytes]]) -> dict[str, bytes]:
    return dict(record_headers)


@pytest.mark.parametrize(
    ("value", "reason", "needle"),
    [
        (b"{not json", DlqReason.INVALID_JSON, "not JSON"),
        (b"\xff\xfe\x00garbage", DlqReason.INVALID_JSON, "not JSON"),
        (b"NaN", DlqReason.INVALID_JSON, "not JSON"),
        (b"[1, 2, 3]", DlqReason.NOT_AN_OBJECT, "list"),
        (b'"a string"', DlqReason.NOT_AN_OBJECT, "str"),
        (b"null", DlqReason.NOT_AN_OBJECT, "NoneType"),
        (b'{"stock_quantity": 5}', DlqReason.INVALID_ITEM, "item_id"),
        (b'{"item_id": "A", "price": "NaN"}', DlqReason.INVALID_ITEM, "price"),
        (b'{"item_id": "A", "stock_quantity": true}', DlqReason.INVALID_ITEM, "boolean"),
        (b'{"item_id": "A", "stock_quantity": "lots"}', DlqReason.INVALID_ITEM, "stock_quantity"),
        (b'{"item_id": "A", "price": 1e400}', DlqReason.INVALID_JSON, "not JSON"),
        (b"", DlqReason.EMPTY, "empty"),
        (None, DlqReason.EMPTY, "empty"),
        (b'{"item_id": "A", "pad": "' + b"x" * 2000 + b'"}', DlqReason.OVERSIZE, "max_message_bytes"),
    ],
)
def test_dead_letter_records_carry_original_bytes_key_reason_and_coordinates(
    value: bytes | None, reason: DlqReason, needle: str
) -> None:
    original_headers = [("trace-id", b"abc")]
    record = Rec("inventory.stock-updates", 2, 77, 1_700_000_000_123, b"SKU-1", value, original_headers)
    batch = validate_records([record], CONFIG)
    assert len(batch.columns) == 0
    [dead] = batch.dead_letters
    assert dead.topic == "dlq"
    assert dead.key == b"SKU-1"
    assert dead.value == value
    h = _headers(dead.headers)
    assert h["dlq.reason"] == reason.value.encode()
    assert needle in h["dlq.error"].decode()
    assert h["dlq.source.topic"] == b"inventory.stock-updates"
    assert h["dlq.source.partition"] == b"2"
    assert h["dlq.source.offset"] == b"77"
    assert h["dlq.source.timestamp"] == b"1700000000123"
    assert h["trace-id"] == b"abc"  # upstream headers are kept
    assert batch.dlq_reasons == {reason.value: 1}


def test_keyless_tombstone_gets_an_empty_value_so_it_can_be_produced() -> None:
    batch = validate_records([Rec("t", 0, 1, None, None, None, None)], CONFIG)
    [dead] = batch.dead_letters
    assert (dead.key, dead.value) == (None, b"")
    assert _headers(dead.headers)["dlq.source.timestamp"] == b""


def test_error_header_is_bounded() -> None:
    headers = dict(
        dlq_headers(DlqReason.INVALID_ITEM, "x" * 10_000, topic="t", partition=0, offset=0, timestamp=0)
    )
    assert len(headers["dlq.error"]) == 1000
