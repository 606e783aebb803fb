"""The local stack is real: Kafka (plain, idempotent and transactional) and MongoDB round trips."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

pytestmark = pytest.mark.integration


def _read_all(bootstrap: str, topic: str, *, isolation: str, expect: int, timeout_s: float = 20) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1500,
    )
    consumer.assign([TopicPartition(topic, 0)])
    values: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for record in consumer:
                values.append(record.value)
            if len(values) >= expect:
                break
    finally:
        consumer.close()
    return values


def test_produce_and_consume_round_trip(kafka_bootstrap: str, topic_factory: Any) -> None:
    topic = topic_factory("roundtrip")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    for i in range(50):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    producer.flush()
    producer.close()

    values = _read_all(kafka_bootstrap, topic, isolation="read_uncommitted", expect=50)
    assert values == [f"v{i}".encode() for i in range(50)]


def test_transactions_hide_aborted_records_from_read_committed(
    kafka_bootstrap: str, topic_factory: Any, unique_name: Any
) -> None:
    topic = topic_factory("txn")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=unique_name("txn"))
    producer.init_transactions()

    producer.begin_transaction()
    producer.send(topic, value=b"committed-1")
    producer.send(topic, value=b"committed-2")
    producer.commit_transaction()

    producer.begin_transaction()
    producer.send(topic, value=b"aborted")
    producer.flush()
    producer.abort_transaction()

    producer.begin_transaction()
    producer.send(topic, value=b"committed-3")
    producer.commit_transaction()
    producer.close()

    committed = _read_all(kafka_bootstrap, topic, isolation="read_committed", expect=3)
    assert committed == [b"committed-1", b"committed-2", b"committed-3"]
    everything = _read_all(kafka_bootstrap, topic, isolation="read_uncommitted", expect=4)
    assert b"aborted" in everything


def test_offsets_sent_in_a_transaction_are_committed_for_the_group(
    kafka_bootstrap: str, topic_factory: Any, unique_name: Any
) -> None:
    source = topic_factory("src")
    sink = topic_factory("sink")
    group = unique_name("group")
    seed = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(5):
        seed.send(source, value=str(i).encode())
    seed.flush()
    seed.close()

    consumer = KafkaConsumer(
        source,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    records: list[Any] = []
    deadline = time.monotonic() + 20
    while len(records) < 5 and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    assert len(records) == 5

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=unique_name("eos"))
    producer.init_transactions()
    producer.begin_transaction()
    for record in records:
        producer.send(sink, value=record.value)
    tp = TopicPartition(source, 0)
    producer.send_offsets_to_transaction(
        {tp: OffsetAndMetadata(records[-1].offset + 1, "", -1)}, consumer.group_metadata()
    )
    producer.commit_transaction()
    producer.close()

    assert consumer.committed(tp) == 5
    consumer.close()
    delivered = _read_all(kafka_bootstrap, sink, isolation="read_committed", expect=5)
    assert delivered == [str(i).encode() for i in range(5)]


def test_mongo_write_and_read(mongo_db: Any) -> None:
    items = mongo_db["inventory"]
    items.insert_many([{"_id": f"sku-{i}", "stock_quantity": i, "price": 1.5 * i} for i in range(100)])
    items.create_index("price")
    assert items.count_documents({}) == 100
    found = list(items.find({"stock_quantity": {"$gte": 95}}, {"price": 1}).sort("_id", 1))
    assert [d["_id"] for d in found] == [f"sku-{i}" for i in range(95, 100)]
    assert all(set(d) == {"_id", "price"} for d in found)
    items.replace_one({"_id": "sku-1"}, {"_id": "sku-1", "stock_quantity": -3}, upsert=True)
    assert items.find_one({"_id": "sku-1"})["stock_quantity"] == -3
    batches = list(items.find({}, batch_size=7))
    assert len(batches) == 100
