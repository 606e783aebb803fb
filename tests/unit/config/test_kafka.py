"""The client-neutral Kafka configuration both transports translate (config.KafkaSettings)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from config import Settings


def test_fetch_size_is_raised_to_hold_one_largest_record() -> None:
    kafka = Settings(max_partition_fetch_bytes=65_536, max_message_bytes=1_000_000).kafka
    assert kafka.partition_fetch_bytes == 1_000_000 + 65_536
    assert Settings().kafka.partition_fetch_bytes == 8_388_608  # the 8 MiB default already fits 1 MiB


def test_decompressed_batch_cap_always_holds_one_largest_record() -> None:
    assert Settings().kafka.decompressed_batch_cap == 64 * 1024 * 1024
    big = Settings(max_decompressed_batch_bytes=2_000_000, max_message_bytes=5_000_000).kafka
    assert big.decompressed_batch_cap == 5_000_000 + 65_536
    with pytest.raises(ValidationError, match="max_decompressed_batch_bytes"):
        Settings(max_decompressed_batch_bytes=1000)


def test_heartbeat_and_fetch_wait_follow_the_session_and_poll_timeouts() -> None:
    assert Settings(session_timeout_ms=45_000).kafka.heartbeat_interval_ms == 4_500
    assert Settings(session_timeout_ms=6_000).kafka.heartbeat_interval_ms == 1_000
    waits = [Settings(poll_timeout_ms=t).kafka.fetch_max_wait_ms for t in (0, 100, 5_000)]
    assert waits == [10, 100, 500]


def test_producer_limits() -> None:
    assert Settings().kafka.producer_max_request_bytes == 16 * 1024 * 1024
    assert Settings(max_message_bytes=10_000_000).kafka.producer_max_request_bytes == 20_000_000
    assert Settings().kafka.delivery_timeout_ms == 60_000  # the transaction timeout bounds it
    kafka = Settings(max_poll_interval_ms=100_000, transaction_timeout_ms=900_000).kafka
    assert kafka.delivery_timeout_ms == 50_000


def test_transactional_id_defaults_to_one_unique_per_instance() -> None:
    """Two instances on one host must not fence each other (issue 13 defect 9)."""
    kafka = Settings(group_id="g").kafka
    first, second = kafka.transactional_id_or_default("host-1"), kafka.transactional_id_or_default("host-1")
    assert first.startswith(f"g.host-1.{os.getpid()}.") and second.startswith(f"g.host-1.{os.getpid()}.")
    assert first != second
    assert Settings(transactional_id="mine").kafka.transactional_id_or_default("host-1") == "mine"
    static = Settings(group_id="g", group_instance_id="scorer-1").kafka  # stable and distinct already
    assert static.transactional_id_or_default("host-1") == "g.scorer-1"


def test_reconnect_backoff_is_capped_and_static_membership_is_optional() -> None:
    kafka = Settings().kafka
    assert kafka.consumer_config(client_id="c")["reconnect.backoff.max.ms"] == 1000
    assert kafka.producer_config(client_id="p")["reconnect.backoff.max.ms"] == 1000
    assert "group.instance.id" not in kafka.consumer_config(client_id="c")
    static = Settings(group_instance_id="scorer-1").kafka.consumer_config(client_id="c")
    assert static["group.instance.id"] == "scorer-1"


@pytest.mark.parametrize("bad", ["", "a b", "x" * 250, "é"])
def test_group_instance_id_is_checked(bad: str) -> None:
    with pytest.raises(ValidationError):
        Settings(group_instance_id=bad)


def test_delivery_mode_sets_isolation_and_the_transactional_producer() -> None:
    alo = Settings().kafka
    eos = Settings(delivery="exactly-once", transactional_id="t", transaction_timeout_ms=30_000).kafka
    assert alo.consumer_config(client_id="c")["isolation.level"] == "read_uncommitted"
    consumer = eos.consumer_config(client_id="c")
    assert consumer["isolation.level"] == "read_committed" and consumer["enable.auto.commit"] is False
    producer = eos.transactional_producer_config(client_id="p")
    assert producer["transactional.id"] == "t" and producer["transaction.timeout.ms"] == 30_000
    assert producer["acks"] == "all" and producer["enable.idempotence"] is True
    assert producer["client.id"] == "p" and "transactional.id" not in alo.producer_config(client_id="p")
