"""Poison records: which input an output came from, the reduced dead letter, reduce-then-park."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from consumer.ports import OutputFailure, OutputRecord
from consumer.scoring.poison import (
    DLQ_HEADER_ORIGINAL_SIZE,
    DLQ_HEADER_TRUNCATED,
    MAX_RECORD_ATTEMPTS,
    REDUCED_HEADERS_BYTES,
    REDUCED_KEY_BYTES,
    REDUCED_VALUE_BYTES,
    PoisonRecords,
    reduce_dead_letter,
    source_of,
)
from consumer.wire.events import DlqReason, dlq_headers


def dead_letter(
    offset: int, value: bytes, *, key: bytes | None = b"K", original: list[tuple[str, bytes]] | None = None
) -> OutputRecord:
    headers = dlq_headers(
        DlqReason.OVERSIZE,
        "too big",
        topic="in",
        partition=1,
        offset=offset,
        timestamp=7,
        service="stockwatch-consume",
        group="g",
        original=original or [],
    )
    return OutputRecord("dlq", key, value, headers)


def event(offset: int) -> OutputRecord:
    body = {"anomaly_id": "x", "source": {"topic": "in", "partition": 0, "offset": offset, "timestamp": 1}}
    return OutputRecord("anomalies", b"SKU", orjson.dumps(body))


def test_source_of_dead_letters_and_events() -> None:
    assert source_of(dead_letter(42, b"v")) == ("in", 1, 42)
    assert source_of(event(7)) == ("in", 0, 7)
    assert source_of(OutputRecord("x", None, b"not json")) is None


def test_a_reduced_dead_letter_keeps_the_headers_and_a_bounded_prefix() -> None:
    big = b"x" * (5 * 1024 * 1024)
    original = dead_letter(3, big, original=[("trace", b"abc")])
    reduced = reduce_dead_letter(original)
    assert reduced is not None
    assert reduced.topic == "dlq" and reduced.key == b"K"
    assert reduced.value == big[:REDUCED_VALUE_BYTES]
    headers = dict(reduced.headers)
    assert headers["trace"] == b"abc"  # the original headers
    for name, value in original.headers:  # every dlq.* header as it was
        assert headers[name] == value
    assert headers[DLQ_HEADER_TRUNCATED] == b"value"
    assert headers[DLQ_HEADER_ORIGINAL_SIZE] == str(len(big)).encode()
    assert source_of(reduced) == ("in", 1, 3)


@given(
    value=st.binary(max_size=3 * REDUCED_VALUE_BYTES),
    key=st.none() | st.binary(max_size=3 * REDUCED_KEY_BYTES),
    headers=st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=8000)), max_size=8),
)
def test_a_reduced_dead_letter_is_always_bounded(
    value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
) -> None:
    reduced = reduce_dead_letter(dead_letter(1, value, key=key, original=headers))
    assert reduced is not None and reduced.value is not None
    assert len(reduced.value) <= REDUCED_VALUE_BYTES and len(reduced.key or b"") <= REDUCED_KEY_BYTES
    marks = dict(reduced.headers)
    assert sum(len(k) + len(v) for k, v in reduced.headers) <= REDUCED_HEADERS_BYTES + 100
    assert int(marks[DLQ_HEADER_ORIGINAL_SIZE]) == len(value)
    assert ("value" in marks[DLQ_HEADER_TRUNCATED].decode()) == (len(value) > REDUCED_VALUE_BYTES)
    assert source_of(reduced) == ("in", 1, 1)
    own = [k for k, _ in reduced.headers if k.lower().startswith("dlq.")]
    assert reduced.headers[: len(own)] == [h for h in reduced.headers if h[0] in own]  # StockWatch's first
    assert len(own) == len(set(own))  # an original dlq.* header was renamed, never duplicated


def test_events_are_not_reduced() -> None:
    assert reduce_dead_letter(event(1)) is None


def test_a_refused_dead_letter_is_reduced_then_parked_after_max_attempts() -> None:
    poison = PoisonRecords()
    outputs = [event(0), dead_letter(1, b"y" * (REDUCED_VALUE_BYTES + 10)), event(2)]
    assert poison.apply(outputs) == (outputs, [])  # nothing refused yet: unchanged
    attempts = 0
    while True:
        sent, parked = poison.apply(outputs)
        attempts += 1
        if parked:
            break
        assert attempts < 10, "never parked"
        if attempts > 1:
            assert len(sent) == 3 and dict(sent[1].headers)[DLQ_HEADER_TRUNCATED] == b"value"
        refusal = OutputFailure(1, "too_large", "MessageSizeTooLarge")
        assert poison.note(sent, [refusal, OutputFailure(0, "transient", "timeout")])
    assert attempts == MAX_RECORD_ATTEMPTS + 1  # the full one, reduced ones, then parked
    assert [p.source for p in parked] == [("in", 1, 1)] and parked[0].kind == "too_large"
    assert poison.apply(outputs) == ([outputs[0], outputs[2]], [])  # parked once, dropped every time
    poison.settled({("in", 1): 2})
    assert len(poison) == 0 and poison.apply(outputs) == (outputs, [])


def test_transient_failures_are_not_counted() -> None:
    poison = PoisonRecords()
    outputs = [dead_letter(1, b"v")]
    for _ in range(10):
        assert not poison.note(outputs, [OutputFailure(0, "transient", "broker down")])
    assert len(poison) == 0


def test_a_refused_event_is_parked_at_the_next_attempt_and_revoked_partitions_are_forgotten() -> None:
    poison = PoisonRecords()
    outputs = [event(5), dead_letter(6, b"v")]
    assert poison.note(
        outputs, [OutputFailure(0, "invalid", "INVALID_RECORD"), OutputFailure(1, "too_large", "x")]
    )
    sent, parked = poison.apply(outputs)
    assert [p.source for p in parked] == [("in", 0, 5)] and len(sent) == 1
    poison.forget([("in", 0), ("in", 1)])
    assert len(poison) == 0
