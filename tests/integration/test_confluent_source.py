"""The librdkafka input adapter on the real broker: what the loop relies on beyond test_consume."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from kafka import KafkaProducer

from config.settings import Settings
from consumer.adapters.confluent import ConfluentSource
from tests.integration.test_unreadable_record import NotUtf8, produce_batch

pytestmark = pytest.mark.integration


def _source(bootstrap: str, topic: str, group: str) -> ConfluentSource:
    return ConfluentSource(Settings(kafka_bootstrap=bootstrap, input_topic=topic, group_id=group).kafka)


def _produce(bootstrap: str, topic: str, n: int, start: int = 0) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(start, start + n):
        producer.send(topic, key=f"k{i}".encode(), value=b'{"i": %d}' % i, headers=[("h", b"v")])
    producer.flush()
    producer.close()


def test_poll_returns_what_is_there_without_waiting_for_a_full_batch(
    kafka_bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topic = topic_factory("ck-in")
    _produce(kafka_bootstrap, topic, 10)
    source = _source(kafka_bootstrap, topic, unique_name("group"))
    try:
        source.subscribe()
        got: list[object] = []
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:  # group join, then the 10 records
            got = [r for recs in source.poll(1000, 2000).values() for r in recs]
        assert [r.offset for r in got] == list(range(10))  # type: ignore[attr-defined]
        first = got[0]
        assert (first.topic, first.partition, first.key, first.value) == (topic, 0, b"k0", b'{"i": 0}')  # type: ignore[attr-defined]
        assert list(first.headers or []) == [("h", b"v")]  # type: ignore[attr-defined]
        assert isinstance(first.timestamp, int) and first.timestamp > 0  # type: ignore[attr-defined]

        # Fewer records than max_records: returned long before the (long) timeout.
        _produce(kafka_bootstrap, topic, 3, start=10)
        started = time.monotonic()
        more = [r for recs in source.poll(30_000, 2000).values() for r in recs]
        assert time.monotonic() - started < 15, "poll waited for a full batch"
        assert [r.offset for r in more][:1] == [10]

        # Nothing there: an empty result after the timeout, not an error.
        while len(more) < 3:
            more += [r for recs in source.poll(1000, 2000).values() for r in recs]
        assert source.poll(200, 2000) == {}
    finally:
        source.close()


def test_commit_seek_and_committed(
    kafka_bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topic = topic_factory("ck-seek")
    group = unique_name("group")
    _produce(kafka_bootstrap, topic, 20)
    source = _source(kafka_bootstrap, topic, group)
    try:
        source.subscribe()
        seen: list[int] = []
        deadline = time.monotonic() + 60
        while len(seen) < 20 and time.monotonic() < deadline:
            seen += [r.offset for recs in source.poll(1000, 2000).values() for r in recs]
        assert seen == list(range(20))
        assert source.assignment() == {(topic, 0)}
        assert source.committed([(topic, 0)]) == {(topic, 0): None}
        source.commit({(topic, 0): 12}, sync=True)
        assert source.committed([(topic, 0)]) == {(topic, 0): 12}
        source.seek({(topic, 0): 12})  # a rewind: the records after the commit come again
        again: list[int] = []
        while len(again) < 8 and time.monotonic() < deadline:
            again += [r.offset for recs in source.poll(1000, 2000).values() for r in recs]
        assert again == list(range(12, 20))
        assert source.lag() == {(topic, 0): 0}
    finally:
        source.close()


def test_headers_librdkafka_cannot_decode_read_as_none_record_after_record(
    kafka_bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    # confluent-kafka leaves the key's decode error set behind a list holding a NULL item: once the
    # interpreter had specialised the call, the error escaped as a SystemError from the dead-letter
    # path and stopped the service (a CI run failed that way); enough records to warm the call up
    topic = topic_factory("ck-in")
    bad, good = [(NotUtf8("trace"), b"1")], [("trace", b"1")]
    produce_batch(kafka_bootstrap, topic, [(b"{not json", bad if i % 3 else good) for i in range(60)])
    source = _source(kafka_bootstrap, topic, unique_name("group"))
    try:
        source.subscribe()
        got: list[object] = []
        deadline = time.monotonic() + 60
        while len(got) < 60 and time.monotonic() < deadline:
            got += [r for recs in source.poll(1000, 2000).values() for r in recs]
        assert len(got) == 60
        for i, record in enumerate(got):
            for _ in range(3):  # read once, then given as read
                headers = record.headers  # type: ignore[attr-defined]
                assert (list(headers) if headers is not None else None) == (None if i % 3 else good)
    finally:
        source.close()
