"""A record kafka-python cannot parse is skipped and dead-lettered, never a crash (real broker).

A header key that is not UTF-8 makes kafka-python's fetcher raise ``CorruptRecordError`` and keep
its position before the record: every later poll met it again, so `stockwatch consume` stopped,
and stopped again when restarted. It must dead-letter the rest of that record batch as
``unreadable_record`` (one record naming the offsets), score everything else and commit past it,
in both delivery modes; the retrain worker's control source skips it like a tombstone. librdkafka
reads such a record but its binding cannot give the headers: it is handled without them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from config.settings import Settings
from consumer.adapters.kafka import ControlSource
from consumer.adapters.kafka.source import KafkaSource
from consumer.ports import UnreadBatch
from consumer.scoring.wiring import build_service
from tests.integration.running import Running
from tests.integration.test_consume import committed, decided, publish_model, read_topic, updates, wait_for
from tests.integration.test_poison import produce_to
from tests.schemas import dlq_headers, validate

pytestmark = pytest.mark.integration

BEFORE, AFTER, OTHER = 5, 5, 6  # records before / after the bad batch in partition 0, in partition 1


class NotUtf8(str):
    """A header name whose bytes on the wire are not UTF-8 (what a non-Python producer can write)."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe-bad"


def produce_batch(bootstrap: str, topic: str, records: list[tuple[bytes, list[Any]]]) -> None:
    """``records`` (value, headers) in one record batch of partition 0."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=500)
    try:
        for value, headers in records:
            producer.send(topic, value=value, key=b"k", partition=0, headers=headers)
        producer.flush()
    finally:
        producer.close()


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_a_record_with_a_header_key_not_utf8_is_dead_lettered_and_everything_else_is_scored(
    delivery: str,
    started: list[Running],
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings(
        kafka_client="kafka-python",
        delivery=delivery,
    )
    publish_model(Path(settings.model_dir))
    bootstrap, topic, group = settings.kafka_bootstrap, settings.input_topic, settings.group_id
    dump = [orjson.dumps(o) for o in updates(BEFORE + 3 + AFTER + OTHER)]
    produce_to(bootstrap, topic, 0, dump[:BEFORE])
    good_a, bad, good_b = dump[BEFORE : BEFORE + 3]
    produce_batch(bootstrap, topic, [(good_a, []), (bad, [(NotUtf8("trace"), b"1")]), (good_b, [])])
    produce_to(bootstrap, topic, 0, dump[BEFORE + 3 : BEFORE + 3 + AFTER])
    produce_to(bootstrap, topic, 1, dump[BEFORE + 3 + AFTER :])

    running = Running(build_service(settings), timeout=150)
    started.append(running)
    everything = {0: BEFORE + 3 + AFTER, 1: OTHER}
    wait_for(
        "both partitions committed past the unreadable record",
        lambda: all(committed(bootstrap, group, topic, p) == n for p, n in everything.items()),
        timeout=90,
        every=0.5,
        state=lambda: {p: committed(bootstrap, group, topic, p) for p in (0, 1)},
    )
    assert running.thread.is_alive()  # still serving
    stats = running.stop()
    eos = delivery == "exactly-once"

    dlq = read_topic(bootstrap, settings.dlq_topic, expect=1, committed_only=eos)
    assert len(dlq) == 1, [dict(r.headers) for r in dlq]
    validate("dlq-headers", dlq_headers(dlq[0].headers))
    headers = dict(dlq[0].headers)
    assert headers["dlq.reason"] == b"unreadable_record"
    assert headers["dlq.source.partition"] == b"0"
    # the record before it in its batch was handed out and scored; the rest of the batch is skipped
    assert headers["dlq.source.first_offset"] == str(BEFORE + 1).encode()
    assert headers["dlq.source.offset"] == str(BEFORE + 2).encode()
    assert b"cannot be parsed" in headers["dlq.error"]
    registry = running.service.metrics.registry
    assert registry.get_sample_value("stockwatch_dlq_total", {"reason": "unreadable_record"}) == 1

    expect = BEFORE + 1 + AFTER + OTHER
    scored = decided(bootstrap, settings.decisions_topic or "", expect=expect, committed_only=eos)
    want = {(0, o) for o in range(BEFORE + 1)} | {(0, o) for o in range(BEFORE + 3, BEFORE + 3 + AFTER)}
    assert scored == want | {(1, o) for o in range(OTHER)}
    assert stats.parked == 0


def test_the_control_source_skips_an_unreadable_record_and_hands_on_the_next_command(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings()
    control = topic_factory("control")
    produce_batch(kafka_bootstrap, control, [(b'{"command": "status"}', [(NotUtf8("x"), b"v")])])
    produce_to(kafka_bootstrap, control, 0, [b'{"command": "status"}'])
    source = ControlSource(settings.kafka, control, group_id=unique_name("ctl"))
    try:
        got: list[tuple[int, int, bytes | None]] = []
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            got += source.poll(0.5)
        assert got == [(0, 0, None), (0, 1, b'{"command": "status"}')]  # the bad one: a tombstone
    finally:
        source.close()


def test_with_librdkafka_a_header_key_not_utf8_is_read_as_no_headers_and_the_record_is_handled(
    started: list[Running],
    service_settings: Callable[..., Settings],
) -> None:
    """librdkafka reads the record but its binding cannot give the headers: an invalid value with
    such a header is dead-lettered (without them) and the service goes on."""
    settings = service_settings(kafka_client="confluent-kafka")
    publish_model(Path(settings.model_dir))
    bootstrap, topic, group = settings.kafka_bootstrap, settings.input_topic, settings.group_id
    dump = [orjson.dumps(o) for o in updates(4)]
    produce_batch(
        bootstrap, topic, [(dump[0], []), (b"{not json", [(NotUtf8("trace"), b"1")]), (dump[1], [])]
    )
    produce_to(bootstrap, topic, 0, dump[2:])

    running = Running(build_service(settings), timeout=150)
    started.append(running)
    wait_for(
        "partition 0 committed past every record",
        lambda: committed(bootstrap, group, topic, 0) == 5,
        timeout=90,
        every=0.5,
        state=lambda: committed(bootstrap, group, topic, 0),
    )
    assert running.thread.is_alive()
    running.stop()
    dlq = read_topic(bootstrap, settings.dlq_topic, expect=1)
    headers = dict(dlq[0].headers)
    assert headers["dlq.reason"] == b"invalid_json" and headers["dlq.source.offset"] == b"1"
    assert dlq[0].value == b"{not json"  # the value is kept whole
    assert not any(name.startswith("original.") or name == "trace" for name in headers)


def test_a_pause_between_the_error_and_the_next_poll_does_not_make_poll_spin(
    kafka_bootstrap: str,
    service_settings: Callable[..., Settings],
) -> None:
    """The service pauses every partition while it waits for its first model: an unreadable batch
    met in the poll that also returned another partition's records was dropped with the pause, and
    after the resume every poll spun for ever on the batch's dead iterator."""
    settings = service_settings(kafka_client="kafka-python")
    topic = settings.input_topic
    produce_to(kafka_bootstrap, topic, 0, [b"{}"] * 5)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=200)
    producer.send(topic, value=b"{}", partition=1, headers=[(NotUtf8("h"), b"1")])
    producer.send(topic, value=b"{}", partition=1)
    producer.flush()
    producer.close()
    source = KafkaSource(settings.kafka)
    try:
        source.subscribe()
        deadline = time.monotonic() + 30
        while not (first := source.poll(500, 500)) and time.monotonic() < deadline:
            pass
        assert first  # partition 0's records, or partition 1's unread batch
        source.pause_all()
        for _ in range(3):
            source.poll(200, 500)
        source.resume_all()
        unread: list[UnreadBatch] = [r for recs in first.values() for r in recs if isinstance(r, UnreadBatch)]

        def read_on() -> None:
            for _ in range(6):
                unread.extend(
                    r for recs in source.poll(300, 500).values() for r in recs if isinstance(r, UnreadBatch)
                )

        reader = threading.Thread(target=read_on, daemon=True)
        reader.start()
        reader.join(30)
        assert not reader.is_alive(), "poll spins"
        assert [(u.partition, u.first_offset, u.offset) for u in unread] == [(1, 0, 1)]
    finally:
        source.close()
