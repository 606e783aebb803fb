"""The kafka-python sinks' outputs, appended straight to the producer's accumulator, arrive exactly as
``KafkaProducer.send`` writes them (key, value, headers, partition, order in each partition); a
record over ``max_request_size`` is still refused alone as ``too_large``; a transaction with one
still aborts, and commits without it; a burst wakes the producer's I/O thread once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from kafka import KafkaProducer

from config.settings import Settings
from consumer.adapters.kafka import AtLeastOnceSink, DeliveryFailedError, TransactionalSink
from consumer.adapters.kafka.client_config import kafka_python_config
from consumer.adapters.kafka.fast_send import fast_enqueue
from consumer.ports import OutputRecord
from tests.integration.test_consume import committed, read_topic
from tests.integration.test_eos_refused import Member

pytestmark = pytest.mark.integration

PARTITIONS = 3
HEADERS = [("stockwatch.kind", b"anomaly"), ("ключ-ü", b"\x00\xff")]


def bursts(topic: str) -> list[list[OutputRecord]]:
    """Three publishes: explicit partitions (with a tombstone and a value larger than a batch), keyed
    outputs enough for the sink to partition them, and a few the producer partitions (send)."""
    explicit = [
        OutputRecord(
            topic, f"item-{i}".encode(), bytes([i]) * (1400 + i), [*HEADERS, ("n", b"%d" % i)], i % 3
        )
        for i in range(150)
    ]
    explicit += [
        OutputRecord(topic, b"gone", None, [], 1),
        OutputRecord(topic, b"big", b"b" * (300 << 10), [], 2),
    ]
    keyed = [OutputRecord(topic, f"sku-{i}".encode(), f"v{i}".encode(), HEADERS) for i in range(40)]
    mixed = [
        OutputRecord(topic, f"few-{i}".encode(), b"x" * i, [], None if i % 2 else i % 3) for i in range(10)
    ]
    return [explicit, keyed, mixed]


def as_written(records: Sequence[Any]) -> dict[int, list[tuple[Any, ...]]]:
    """Each partition's records in order, as the broker holds them."""
    out: dict[int, list[tuple[Any, ...]]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out.setdefault(r.partition, []).append((r.key, r.value, [tuple(h) for h in r.headers]))
    return out


@pytest.fixture
def settings(
    kafka_bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> Settings:
    return Settings(
        kafka_bootstrap=kafka_bootstrap,
        input_topic=topic_factory("in", partitions=1),
        group_id=unique_name("group"),
        delivery="exactly-once",
        transactional_id=f"fast-send-{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture
def member(settings: Settings) -> Iterator[Member]:
    m = Member(settings.kafka_bootstrap, settings.group_id, settings.input_topic)
    yield m
    m.consumer.close()


def sent_plainly(settings: Settings, topic: str) -> dict[int, list[tuple[Any, ...]]]:
    """The bursts as ``KafkaProducer.send`` writes them, with the sinks' producer settings."""
    producer = KafkaProducer(
        **kafka_python_config(settings.kafka.producer_config(client_id="plain"), KafkaProducer)
    )
    try:
        for burst in bursts(topic):
            for o in burst:
                producer.send(o.topic, value=o.value, key=o.key, headers=o.headers, partition=o.partition)
        producer.flush(30)
    finally:
        producer.close()
    return as_written(read_topic(settings.kafka_bootstrap, topic, expect=sum(map(len, bursts(topic)))))


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_outputs_arrive_as_send_writes_them(
    exactly_once: bool, settings: Settings, member: Member, topic_factory: Callable[..., str]
) -> None:
    topic, plain = topic_factory("out", partitions=PARTITIONS), topic_factory("plain", partitions=PARTITIONS)
    sink = TransactionalSink(settings.kafka) if exactly_once else AtLeastOnceSink(settings.kafka)
    try:
        assert fast_enqueue(sink._producer) is not None  # the path under test is taken
        for n, burst in enumerate(bursts(topic)):
            handle = sink.publish(burst, {(settings.input_topic, 0): n + 1}, member)  # type: ignore[arg-type]
            handle.wait()
            assert handle.error() is None
    finally:
        sink.close()
    n = sum(map(len, bursts(topic)))
    got = as_written(read_topic(settings.kafka_bootstrap, topic, expect=n, committed_only=exactly_once))
    want = sent_plainly(settings, plain)
    assert sum(map(len, got.values())) == n
    assert got == want
    if exactly_once:
        assert committed(settings.kafka_bootstrap, settings.group_id, settings.input_topic) == 3


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_a_record_over_max_request_size_is_refused_alone(
    exactly_once: bool, settings: Settings, member: Member, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("out", partitions=PARTITIONS)
    small = [OutputRecord(topic, f"k{i}".encode(), b"v" * 1400, HEADERS, i % 3) for i in range(10)]
    huge = OutputRecord(topic, b"huge", b"h" * (settings.kafka.producer_max_request_bytes + 1), [], 0)
    offsets = {(settings.input_topic, 0): 7}
    sink = TransactionalSink(settings.kafka) if exactly_once else AtLeastOnceSink(settings.kafka)
    try:
        handle: Any = sink.publish([*small[:5], huge, *small[5:]], offsets, member)  # type: ignore[arg-type]
        handle.wait()
        assert isinstance(handle.error(), DeliveryFailedError)
        failures = handle.error().failures
        if exactly_once:
            retry = sink.publish(small, offsets, member)  # type: ignore[arg-type]  # the retry without it commits
            retry.wait()
            assert retry.error() is None
    finally:
        sink.close()
    refused_records = [(f.index, f.kind) for f in failures if f.kind != "transient"]
    assert refused_records == [(5, "too_large")]  # a transaction's others fail with it, as collateral
    assert exactly_once or len(failures) == 1
    got = read_topic(settings.kafka_bootstrap, topic, expect=len(small), committed_only=exactly_once)
    assert as_written(got) == as_written_records(small)  # the others arrived (the aborted attempt's did not)


def as_written_records(outputs: Sequence[OutputRecord]) -> dict[int, list[tuple[Any, ...]]]:
    """Each partition's outputs in order, as they should arrive (all with an explicit partition)."""
    out: dict[int, list[tuple[Any, ...]]] = {}
    for o in outputs:
        out.setdefault(o.partition or 0, []).append((o.key, o.value, list(o.headers)))
    return out


def test_a_burst_wakes_the_io_thread_once(settings: Settings, topic_factory: Callable[..., str]) -> None:
    # send wakes it for every new or full batch (every record once a partition has two queued)
    topic = topic_factory("out", partitions=PARTITIONS)
    sink = AtLeastOnceSink(settings.kafka)
    sender, woken = sink._producer._sender, list[int]()
    wakeup = sender.wakeup

    def counted() -> None:
        woken.append(1)
        wakeup()

    sender.wakeup = counted  # counts, then wakes it as before
    try:
        sink.publish(bursts(topic)[1], {}, None).wait()  # type: ignore[arg-type]  # metadata loaded
        for burst in (bursts(topic)[0], bursts(topic)[0]):
            woken.clear()
            sink.publish(burst, {}, None).wait()  # type: ignore[arg-type]
            assert len(woken) == 1
    finally:
        sink.close()
