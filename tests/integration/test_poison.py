"""One record must never stall `stockwatch consume` (issue 13 defect 2), against the real broker.

A 5 MB stock update produced gzip-compressed is accepted by the broker (its compressed batch is
small; the stack's ``message.max.bytes`` is 2 MiB) but its dead letter, produced uncompressed, is
refused as too large. The service must publish a reduced dead letter instead (or park the
record), score the later records of that partition and of the other one, and commit past it —
with both transports, in at-least-once and exactly-once. And with the Mongo audit on and Mongo
unreachable, the outputs still go out and offsets advance.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from config.settings import Settings
from consumer.scoring.poison import DLQ_HEADER_ORIGINAL_SIZE, DLQ_HEADER_TRUNCATED, REDUCED_VALUE_BYTES
from consumer.scoring.wiring import build_service
from tests.integration.running import Running
from tests.integration.test_consume import (
    committed,
    free_port,
    publish_model,
    read_topic,
    updates,
    wait_for,
)

pytestmark = pytest.mark.integration

POISON_BYTES = 5 * 1024 * 1024
BEFORE, AFTER, OTHER = 15, 15, 20  # records before / after the poison in partition 0, in partition 1


def produce_to(bootstrap: str, topic: str, partition: int, values: list[bytes], **config: Any) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **config)
    try:
        for value in values:
            producer.send(topic, value=value, key=b"k", partition=partition)
        producer.flush()
    finally:
        producer.close()


def poison_value() -> bytes:
    return b'{"item_id": "SKU-POISON", "note": "' + b"z" * POISON_BYTES + b'"}'


def feed(settings: Settings) -> list[dict[str, Any]]:
    """Partition 0: good, the 5 MB poison (gzip), good; partition 1: good. Returns the good items."""
    bootstrap, topic = settings.kafka_bootstrap, settings.input_topic
    objs = updates(BEFORE + AFTER + OTHER)
    dump = [orjson.dumps(o) for o in objs]
    produce_to(bootstrap, topic, 0, dump[:BEFORE])
    produce_to(
        bootstrap, topic, 0, [poison_value()], compression_type="gzip", max_request_size=2 * POISON_BYTES
    )
    produce_to(bootstrap, topic, 0, dump[BEFORE : BEFORE + AFTER])
    produce_to(bootstrap, topic, 1, dump[BEFORE + AFTER :])
    return objs


def check_poison_resolved(settings: Settings, running: Running) -> None:
    bootstrap, topic, group = settings.kafka_bootstrap, settings.input_topic, settings.group_id
    service = running.service
    everything = {0: BEFORE + 1 + AFTER, 1: OTHER}

    def state() -> object:
        return (
            {p: committed(bootstrap, group, topic, p) for p in (0, 1)},
            service.health.readyz(),
            service.metrics.registry.get_sample_value(
                "stockwatch_delivery_failures_total", {"kind": "DeliveryFailedError"}
            ),
        )

    wait_for(
        "both partitions committed past the poison record",
        lambda: all(committed(bootstrap, group, topic, p) == n for p, n in everything.items()),
        timeout=90,
        every=0.5,
        state=state,
    )
    stats = running.stop()
    eos = settings.delivery == "exactly-once"

    dlq = read_topic(bootstrap, settings.dlq_topic, expect=1, committed_only=eos)
    parked = service.metrics.registry.get_sample_value(
        "stockwatch_parked_records_total", {"reason": "too_large"}
    )
    if parked:  # allowed by the design, but this broker takes 2 MiB: the reduced dead letter fits
        pytest.fail(f"the poison record was parked, not reduced (dead letters: {len(dlq)})")
    assert len(dlq) == 1, [dict(r.headers) for r in dlq]
    headers = dict(dlq[0].headers)
    assert headers["dlq.reason"] == b"oversize"
    assert (headers["dlq.source.partition"], headers["dlq.source.offset"]) == (b"0", str(BEFORE).encode())
    assert headers[DLQ_HEADER_TRUNCATED] == b"value"
    assert int(headers[DLQ_HEADER_ORIGINAL_SIZE]) == len(poison_value())
    assert dlq[0].value == poison_value()[:REDUCED_VALUE_BYTES]

    decisions = [
        orjson.loads(r.value)
        for r in read_topic(
            bootstrap, settings.decisions_topic or "", expect=BEFORE + AFTER + OTHER, committed_only=eos
        )
    ]
    scored = {(d["source"]["partition"], d["source"]["offset"]) for d in decisions}
    want = {(0, o) for o in range(BEFORE)} | {(0, o) for o in range(BEFORE + 1, BEFORE + 1 + AFTER)}
    want |= {(1, o) for o in range(OTHER)}
    assert scored == want  # every later record of both partitions scored
    if eos:
        assert len(decisions) == len(want)
    assert stats.parked == 0 and stats.delivery_failures >= 1


@pytest.mark.parametrize(
    ("client", "delivery"),
    [
        ("kafka-python", "at-least-once"),
        ("kafka-python", "exactly-once"),
        ("confluent-kafka", "at-least-once"),
        ("confluent-kafka", "exactly-once"),
    ],
)
def test_a_dead_letter_too_large_for_the_broker_does_not_stall_the_consumer(
    client: str,
    delivery: str,
    started: list[Running],
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings(
        kafka_client=client,
        delivery=delivery,
    )
    publish_model(Path(settings.model_dir))
    feed(settings)
    running = Running(build_service(settings), timeout=150)
    started.append(running)
    check_poison_resolved(settings, running)


def test_audit_with_mongo_unreachable_does_not_hold_the_outputs_back(
    started: list[Running],
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings(
        audit_anomalies=True,
        mongo_uri=f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
        max_poll_records=50,
    )
    publish_model(Path(settings.model_dir))
    objs = updates(100)
    bootstrap, topic, group = settings.kafka_bootstrap, settings.input_topic, settings.group_id
    produce_to(bootstrap, topic, 0, [orjson.dumps(o) for o in objs[:60]])
    produce_to(bootstrap, topic, 1, [orjson.dumps(o) for o in objs[60:]])
    running = Running(build_service(settings), timeout=150)
    started.append(running)
    service = running.service
    wait_for(
        "offsets committed with Mongo down",
        lambda: (committed(bootstrap, group, topic, 0), committed(bootstrap, group, topic, 1)) == (60, 40),
        timeout=90,
        every=0.5,
        state=lambda: service.metrics.registry.get_sample_value("stockwatch_audit_failures_total"),
    )
    stats = running.stop()
    registry = service.metrics.registry
    assert (registry.get_sample_value("stockwatch_audit_failures_total") or 0) >= 3
    assert (registry.get_sample_value("stockwatch_audit_skipped_total") or 0) == stats.anomalies > 0
    assert not registry.get_sample_value("stockwatch_audit_writes_total")
    events = read_topic(bootstrap, settings.anomaly_topic, expect=stats.anomalies)
    assert {orjson.loads(r.value)["anomaly_id"] for r in events} and len(events) >= stats.anomalies
    decisions = read_topic(bootstrap, settings.decisions_topic or "", expect=len(objs))
    assert {(r.value and orjson.loads(r.value)["event_id"]) for r in decisions} == {
        o["event_id"] for o in objs
    }
