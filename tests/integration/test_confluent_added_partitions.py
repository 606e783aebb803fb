"""librdkafka's producer and partitions added to an output topic while the service runs.

Attack review: partitions added to the input of a running `default` service get changelog
partitions (the changelog is partitioned like the input); the librdkafka producer refused every
record for them at once (``_UNKNOWN_PARTITION``) until its next metadata refresh, up to 5 minutes,
and every batch holding one failed: every partition of the service stalled meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewPartitions

from config import Settings
from consumer.ports import OutputRecord

pytestmark = pytest.mark.integration


def test_a_record_for_a_partition_added_since_the_producer_connected_is_delivered(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    from consumer.adapters.confluent.sinks import ConfluentAtLeastOnceSink

    topic = topic_factory("out")
    sink = ConfluentAtLeastOnceSink(Settings(kafka_bootstrap=kafka_bootstrap).kafka)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        first = sink.publish([OutputRecord(topic, b"k", b"v0", partition=0)], {}, None)  # type: ignore[arg-type]
        first.wait()
        assert first.error() is None
        admin.create_partitions({topic: NewPartitions(3)})
        started = time.monotonic()
        delivery = sink.publish([OutputRecord(topic, b"k", b"v2", partition=2)], {}, None)  # type: ignore[arg-type]
        delivery.wait()
        assert delivery.error() is None
        assert time.monotonic() - started < 30
    finally:
        sink.close()
        admin.close()
