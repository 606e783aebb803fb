"""ChangelogPartitions: the changelog is made to cover a partition before either transport reads it."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaTimeoutError

from config.settings import Settings
from consumer.adapters.kafka import changelog
from consumer.adapters.kafka.changelog import ChangelogPartitions
from consumer.ports import KafkaUnavailableError


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each ensure_changelog call; the topic has as many partitions as the list's first item."""
    seen: list[int] = []
    counts = [2, 4]

    def ensure(_broker: object, _topic: str, *, input_topic: str) -> int:
        seen.append(counts[min(len(seen), len(counts) - 1)])
        return seen[-1]

    monkeypatch.setattr(changelog, "ensure_changelog", ensure)
    return seen


def _partitions() -> ChangelogPartitions:
    return ChangelogPartitions(Settings(kafka_bootstrap="127.0.0.1:1", input_topic="in").kafka, "in.state")


def test_the_topic_is_ensured_once_while_partitions_stay_within_its_count(calls: list[int]) -> None:
    ensure = _partitions()
    for partition in (0, 1, 0, 1):
        ensure(partition)
    assert calls == [2]


def test_a_partition_beyond_the_count_last_seen_ensures_again(calls: list[int]) -> None:
    ensure = _partitions()
    ensure(0)
    ensure(3)  # an input partition added while running
    ensure(3)
    assert calls == [2, 4]


def test_a_broker_failure_is_the_outage_the_loop_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_broker: object, _topic: str, *, input_topic: str) -> int:
        raise KafkaTimeoutError("no broker")

    monkeypatch.setattr(changelog, "ensure_changelog", refuse)
    ensure = _partitions()
    with pytest.raises(KafkaUnavailableError, match=r"could not create the state changelog in\.state"):
        ensure(0)
