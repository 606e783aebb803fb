"""ConfluentSource's commit answers across a re-join (no broker: librdkafka's commit callback is
called by hand, as its poll would; subscribing needs no broker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, Message, TopicPartition

from config import Settings
from consumer.adapters.confluent.source import ConfluentSource
from consumer.ports import StaleMemberError

TOPIC = "in"


@pytest.fixture
def src() -> Iterator[ConfluentSource]:
    source = ConfluentSource(Settings(kafka_bootstrap="127.0.0.1:1", input_topic=TOPIC).kafka)
    source.subscribe()
    yield source
    source.close()


def test_a_refusal_answering_a_commit_of_the_membership_given_up_does_not_rejoin_again(
    src: ConfluentSource,
) -> None:
    src.rejoin()
    src._committed(KafkaError(KafkaError.UNKNOWN_MEMBER_ID), [])  # sent before the re-join
    src.commit({(TOPIC, 0): 5}, sync=False)  # no StaleMemberError (nothing assigned yet: no commit)
    src._assigned(None, [TopicPartition(TOPIC, 0)])  # type: ignore[arg-type]
    src._committed(KafkaError(KafkaError.ILLEGAL_GENERATION), [])  # of the new membership: counts
    with pytest.raises(StaleMemberError):
        src.commit({(TOPIC, 0): 7}, sync=False)


class RevokingConsumer:
    """librdkafka's consume serves the rebalance callbacks and returns what it fetched before them
    (and, for a partition assigned back meanwhile, after them: from the committed offset)."""

    def __init__(self, source: ConfluentSource, revoke: list[int], back: tuple[int, ...] = ()) -> None:
        self.source, self.revoke, self.back, self.calls = source, revoke, list(back), 0
        self.seeks: list[tuple[int, int]] = []

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.calls += 1
        if self.calls > 1:
            return []
        self.source._revoked(None, [TopicPartition(TOPIC, p) for p in self.revoke])  # type: ignore[arg-type]
        before = [Message(topic=TOPIC, partition=p, offset=o, value=b"{}") for p in (0, 3) for o in (7, 8)]
        return before + [
            Message(topic=TOPIC, partition=p, offset=o, value=b"{}") for p in self.back for o in (5, 6)
        ]

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, p) for p in [0, *self.back]]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))


def test_records_of_partitions_revoked_inside_the_poll_are_not_returned(src: ConfluentSource) -> None:
    # their outputs would commit in a later transaction while the new owner reads them too
    real = src._consumer
    try:
        src._consumer = RevokingConsumer(src, revoke=[3])  # type: ignore[assignment]
        got = src.poll(100, 10)
        assert {tp: [r.offset for r in recs] for tp, recs in got.items()} == {(TOPIC, 0): [7, 8]}
        src._consumer.calls = 0  # type: ignore[attr-defined]
        src._consumer.revoke = []  # type: ignore[attr-defined]
        assert set(src.poll(100, 10)) == {(TOPIC, 0), (TOPIC, 3)}  # a later poll is not filtered
    finally:
        src._consumer = real


def test_a_partition_revoked_and_assigned_back_in_one_poll_is_read_again_from_the_first_dropped(
    src: ConfluentSource,
) -> None:
    real = src._consumer
    try:
        fake = RevokingConsumer(src, revoke=[3], back=(3,))
        src._consumer = fake  # type: ignore[assignment]
        assert set(src.poll(100, 10)) == {(TOPIC, 0)}
        assert fake.seeks == [(3, 5)]  # the committed offset, where the records after the assignment began
    finally:
        src._consumer = real
