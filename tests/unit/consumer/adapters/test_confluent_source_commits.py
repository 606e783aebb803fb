"""ConfluentSource's commit answers across a re-join (no broker: librdkafka's commit callback is
called by hand, as its poll would; subscribing needs no broker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, TopicPartition

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
