"""Which outputs the sink appends straight to kafka-python's accumulator, and whether it still can.

The records' delivery through that path is tested against the real broker
(tests/integration/test_fast_send.py); here: the installed kafka-python still has the internals the
fast path mirrors (an upgrade that changes them must be noticed), and the pure decision of which
records may skip ``send``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka import KafkaProducer
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.serializer import Serializer

from consumer.adapters.kafka.fast_send import fast_enqueue, record_bound, takes_fast_path
from consumer.ports import OutputRecord

NOWHERE = "127.0.0.1:1"  # no broker: the producers below are only inspected, never used


@pytest.fixture
def producers() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for p in made:
        p.close(timeout=1)  # its I/O thread ends (a later hypothesis test must not see it use random)


def producer(made: list[Any], cls: type[Any] = KafkaProducer, **config: Any) -> Any:
    p = cls(bootstrap_servers=NOWHERE, api_version=(2, 8), acks="all", enable_idempotence=True, **config)
    made.append(p)
    return p


def test_the_installed_kafka_python_offers_the_fast_path(producers: list[Any]) -> None:
    # fails when a kafka-python upgrade changes the internals: every record then takes send (slower)
    idempotent = fast_enqueue(producer(producers))
    assert idempotent is not None
    assert idempotent._manager is None  # send adds partitions to a transaction only when transactional
    transactional = fast_enqueue(producer(producers, transactional_id="t"))
    assert transactional is not None and transactional._manager is not None


class _Bytes(Serializer):  # type: ignore[misc]
    def serialize(self, topic: str, headers: Any, value: Any) -> Any:
        return value


class _OwnSend(KafkaProducer):  # type: ignore[misc]
    def send(self, *args: Any, **kwargs: Any) -> Any:
        return super().send(*args, **kwargs)


def test_a_serializer_or_an_own_send_keeps_every_record_on_send(producers: list[Any]) -> None:
    assert fast_enqueue(producer(producers, value_serializer=_Bytes())) is None
    assert fast_enqueue(producer(producers, key_serializer=_Bytes())) is None
    assert fast_enqueue(producer(producers, cls=_OwnSend)) is None
    assert fast_enqueue(object()) is None  # e.g. a test's fake producer


def test_a_closed_producer_takes_send(producers: list[Any]) -> None:
    p = producer(producers)
    fast = fast_enqueue(p)
    assert fast is not None and fast.begin()
    p.close(timeout=0)
    assert not fast.begin()  # send raises IllegalStateError, as it always did


headers = st.lists(st.tuples(st.text(max_size=12), st.binary(max_size=64)), max_size=4)


@given(st.one_of(st.none(), st.binary(max_size=300)), st.binary(max_size=3000), headers)
def test_the_bound_is_never_below_sends_size_estimate(
    key: bytes | None, value: bytes, hs: list[tuple[str, bytes]]
) -> None:
    bound = record_bound(OutputRecord("t", key, value, hs))
    assert bound is not None
    assert bound >= DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, hs)


def test_the_bound_is_not_far_above_sends_size_estimate() -> None:
    o = OutputRecord("t", b"item-42", b"v" * 1400, [("stockwatch.kind", b"anomaly")])
    estimate = DefaultRecordBatchBuilder.estimate_size_in_bytes(o.key, o.value, o.headers)
    bound = record_bound(o)
    assert bound is not None and bound <= estimate + 128


@pytest.mark.parametrize(
    "o",
    [
        OutputRecord("t", None, None),  # send: ValueError
        OutputRecord("t", b"k", bytearray(b"v")),  # type: ignore[arg-type]  # send accepts it: its checks
        OutputRecord("t", "k", b"v"),  # type: ignore[arg-type]  # send: TypeError
        OutputRecord("t", b"k", b"v", [("h", None)]),  # type: ignore[list-item]  # send: TypeError
        OutputRecord("t", b"k", b"v", [["h", b"x"]]),  # type: ignore[list-item]
        OutputRecord("t", b"k", b"v", (("h", b"x"),)),  # type: ignore[arg-type]
        OutputRecord("t", b"k", b"v", [(b"h", b"x")]),  # type: ignore[list-item]
    ],
)
def test_records_send_might_refuse_take_send(o: OutputRecord) -> None:
    assert record_bound(o) is None
    assert not takes_fast_path(o, 0, {0}, 1 << 20)


def test_a_tombstone_with_a_key_takes_the_fast_path() -> None:
    assert takes_fast_path(OutputRecord("t", b"k", None), 0, {0}, 1 << 20)


def test_only_a_known_partition_takes_the_fast_path() -> None:
    o = OutputRecord("t", b"k", b"v")
    assert takes_fast_path(o, 2, {0, 1, 2}, 1 << 20)
    assert not takes_fast_path(o, None, {0, 1, 2}, 1 << 20)  # the producer's partitioner decides
    assert not takes_fast_path(o, 3, {0, 1, 2}, 1 << 20)  # send refuses it; the sink then retries
    assert not takes_fast_path(o, 0, None, 1 << 20)  # metadata not loaded: send waits for it


def test_a_record_near_the_size_limit_takes_send() -> None:
    limit = 1 << 20
    assert takes_fast_path(OutputRecord("t", b"k", b"v" * (limit - 200)), 0, {0}, limit)
    near = OutputRecord("t", b"k", b"v" * (limit - 95))
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(near.key, near.value, []) <= limit
    assert not takes_fast_path(near, 0, {0}, limit)  # send accepts it, by its own estimate
    over = OutputRecord("t", b"k", b"v" * (limit + 1))
    assert not takes_fast_path(over, 0, {0}, limit)  # send refuses it: MessageSizeTooLargeError
