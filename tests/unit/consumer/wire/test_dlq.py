"""Dead-letter records: original bytes, key and headers, reason and coordinates, per the documented schema."""

from __future__ import annotations

from collections import namedtuple
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

from consumer.scoring.batch import BatchConfig, validate_records
from consumer.wire.dlq import DLQ_HEADERS, DlqReason, dlq_headers
from tests.schemas import dlq_headers as decoded_headers
from tests.schemas import validate

Rec = namedtuple("Rec", "topic partition offset timestamp key value headers")
CONFIG = BatchConfig(anomaly_topic="out", dlq_topic="dlq", max_message_bytes=1024, group_id="scorers")
WHO = {"service": "stockwatch-consume", "group": "scorers"}


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
    validate("dlq-headers", decoded_headers(dead.headers))


def test_keyless_tombstone_gets_an_empty_value_so_it_can_be_produced() -> None:
    batch = validate_records([Rec("t", 0, 1, None, None, None, None)], CONFIG)
    [dead] = batch.dead_letters
    assert (dead.key, dead.value) == (None, b"")
    assert _headers(dead.headers)["dlq.source.timestamp"] == b""
    validate("dlq-headers", decoded_headers(dead.headers))


def test_a_null_original_header_value_is_made_empty_so_it_can_be_produced() -> None:
    # kafka-python's consumer yields None for a null header value; its send refuses one (TypeError)
    record = Rec("t", 0, 1, None, b"k", b"{not json", [("trace-id", None), ("dlq.reason", None)])
    [dead] = validate_records([record], CONFIG).dead_letters
    assert dead.headers[-2:] == [("trace-id", b""), ("original.dlq.reason", b"")]
    assert all(type(v) is bytes for _, v in dead.headers)
    validate("dlq-headers", decoded_headers(dead.headers))


def test_error_header_is_bounded() -> None:
    headers = dict(
        dlq_headers(
            DlqReason.INVALID_ITEM, "x" * 10_000, topic="t", partition=0, offset=0, timestamp=0, **WHO
        )
    )
    assert len(headers["dlq.error"]) == 1000


def test_headers_schema_refuses_a_missing_reason_or_a_non_numeric_offset() -> None:
    good = decoded_headers(
        dlq_headers(DlqReason.EMPTY, "e", topic="t", partition=1, offset=2, timestamp=None, **WHO)
    )
    validate("dlq-headers", good | {"trace-id": "abc"})
    for bad in (
        {k: v for k, v in good.items() if k != "dlq.reason"},
        good | {"dlq.reason": "because"},
        good | {"dlq.source.offset": "two"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate("dlq-headers", bad)


def test_stockwatch_headers_come_first_and_say_when_who_and_which_group() -> None:
    record = Rec("in", 0, 5, 1, b"K", b"[]", [("trace-id", b"t1")])
    [dead] = validate_records([record], CONFIG).dead_letters
    names = [k for k, _ in dead.headers]
    assert names[:9] == list(DLQ_HEADERS[:9])  # StockWatch's, in the documented order
    assert names[9:] == ["trace-id"]
    h = decoded_headers(dead.headers)
    assert (h["dlq.service"], h["dlq.group"]) == ("stockwatch-consume", "scorers")
    at = datetime.fromisoformat(h["dlq.dead_lettered_at"])
    assert at.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - at).total_seconds()) < 60


@pytest.mark.parametrize("forged", ["dlq.reason", "DLQ.Reason", "dlq.source.offset", "dlq.service"])
def test_a_producer_cannot_plant_a_dlq_header(forged: str) -> None:
    planted = [(forged, b"planted"), ("trace-id", b"t1")]
    record = Rec("in", 0, 5, 1, b"K", b"{oops", planted)
    [dead] = validate_records([record], CONFIG).dead_letters
    first: dict[str, bytes] = {}
    for k, v in dead.headers:
        first.setdefault(k, v)
    last = dict(dead.headers)
    for reader in (first, last):  # first-occurrence and last-occurrence readers agree
        assert reader["dlq.reason"] == b"invalid_json"
        assert reader["dlq.source.offset"] == b"5"
        assert reader["dlq.service"] == b"stockwatch-consume"
        assert reader[f"original.{forged}"] == b"planted"
    assert [k for k, _ in dead.headers].count(forged) == (1 if forged in DLQ_HEADERS else 0)
    validate("dlq-headers", decoded_headers(dead.headers))


def test_headers_schema_refuses_a_dlq_header_stockwatch_does_not_write() -> None:
    good = decoded_headers(
        dlq_headers(DlqReason.EMPTY, "e", topic="t", partition=1, offset=2, timestamp=None, **WHO)
    )
    validate("dlq-headers", good | {"original.dlq.reason": "forged"})
    for bad in (
        good | {"dlq.planted": "x"},
        good | {"DLQ.Reason": "x"},
        good | {"dlq.dead_lettered_at": "yesterday"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate("dlq-headers", bad)
    with pytest.raises(jsonschema.ValidationError):
        validate("dlq-headers", {k: v for k, v in good.items() if k != "dlq.group"})
