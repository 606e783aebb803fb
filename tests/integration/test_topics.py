"""Output topics created by `stockwatch consume` are sized like its input (issue 14, point 7)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaAdminClient

from config import Settings
from consumer.scoring.wiring import ensure_output_topics

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10000)
    yield client
    client.close()


@pytest.fixture
def outputs(
    admin: KafkaAdminClient, unique_name: Callable[[str], str]
) -> Iterator[Callable[[], dict[str, str]]]:
    """Fresh output topic names (not created); whatever the test created is deleted afterwards."""
    names: list[str] = []

    def make() -> dict[str, str]:
        fresh = {
            key: unique_name(f"test-{key.removesuffix('_topic')}")
            for key in ("anomaly_topic", "dlq_topic", "decisions_topic", "status_topic")
        }
        names.extend(fresh.values())
        return fresh

    yield make
    existing = set(admin.list_topics())
    if mine := [n for n in names if n in existing]:
        admin.delete_topics(mine)


def partition_counts(admin: KafkaAdminClient, topics: list[str]) -> dict[str, int]:
    return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(topics)}


def test_created_outputs_take_the_input_partition_count(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    admin: KafkaAdminClient,
    outputs: Callable[[], dict[str, str]],
) -> None:
    names = outputs()
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, input_topic=topic_factory("in", partitions=3), **names
    )
    created = ensure_output_topics(settings.kafka)
    assert sorted(created) == sorted(names.values())
    counts = partition_counts(admin, list(names.values()))
    assert counts == {
        names["anomaly_topic"]: 3,
        names["dlq_topic"]: 3,
        names["decisions_topic"]: 3,
        names["status_topic"]: 1,  # a broadcast channel: one partition keeps announcements in order
    }
    assert ensure_output_topics(settings.kafka) == []  # existing topics are left alone


def test_output_partitions_overrides_the_input_count(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    admin: KafkaAdminClient,
    outputs: Callable[[], dict[str, str]],
) -> None:
    names = outputs()
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        input_topic=topic_factory("in", partitions=3),
        output_partitions=2,
        **names,
    )
    ensure_output_topics(settings.kafka)
    counts = partition_counts(admin, [names["anomaly_topic"], names["dlq_topic"]])
    assert set(counts.values()) == {2}


def test_a_replication_factor_the_cluster_cannot_meet_is_refused(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    admin: KafkaAdminClient,
    outputs: Callable[[], dict[str, str]],
) -> None:
    names = outputs()
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, input_topic=topic_factory("in"), replication_factor=3, **names
    )
    with pytest.raises(ValueError, match="STOCKWATCH_REPLICATION_FACTOR") as refused:  # one broker here
        ensure_output_topics(settings.kafka)
    assert "replication factor 3" in str(refused.value) and "\n" not in str(refused.value)
    assert names["anomaly_topic"] not in admin.list_topics()
