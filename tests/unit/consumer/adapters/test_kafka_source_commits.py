"""KafkaSource's async commit bookkeeping across a re-join (pure: a stand-in records the calls a
KafkaConsumer would get and answers the commits by hand; the broker's side is in chaos/)."""

from __future__ import annotations

from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError

from config import Settings
from consumer.adapters.kafka.source import KafkaSource
from consumer.ports import StaleMemberError

TOPIC = "in"


class Client:
    """What KafkaSource calls on a KafkaConsumer; async commits wait until ``answer``."""

    def __init__(self) -> None:
        self.assigned = {TopicPartition(TOPIC, 0)}
        self.sent: list[tuple[dict[TopicPartition, Any], Any]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def commit_async(self, offsets: dict[TopicPartition, Any], callback: Any) -> None:
        self.sent.append((offsets, callback))

    def answer(self, index: int, response: Any) -> None:
        offsets, callback = self.sent[index]
        callback(offsets, response)

    def unsubscribe(self) -> None: ...
    def subscribe(self, topics: list[str], listener: Any = None) -> None: ...


@pytest.fixture
def client() -> Client:
    return Client()


def source(client: Client) -> KafkaSource:
    return KafkaSource(Settings(input_topic=TOPIC).kafka, consumer=client)


def offsets_sent(client: Client, index: int) -> dict[int, int]:
    return {tp.partition: om.offset for tp, om in client.sent[index][0].items()}


def test_one_async_commit_in_flight_newer_offsets_wait_for_its_answer(client: Client) -> None:
    src = source(client)
    src.commit({(TOPIC, 0): 10}, sync=False)
    src.commit({(TOPIC, 0): 20}, sync=False)
    assert len(client.sent) == 1  # coalesced while the first is in flight
    client.answer(0, None)
    src.commit({(TOPIC, 0): 30}, sync=False)
    assert len(client.sent) == 2 and offsets_sent(client, 1) == {0: 30}


def test_a_commit_in_flight_at_a_rejoin_holds_back_nothing_after_it(client: Client) -> None:
    """During an outage the member re-joined with a commit unanswered: the commits of its new
    membership went out only once the old one was 10 s old."""
    src = source(client)
    src.commit({(TOPIC, 0): 10}, sync=False)
    src.rejoin()
    src.commit({(TOPIC, 0): 10}, sync=False)  # the partition came back from the committed offset
    assert len(client.sent) == 2 and offsets_sent(client, 1) == {0: 10}


def test_a_stale_refusal_of_a_commit_sent_before_a_rejoin_is_no_reason_to_rejoin_again(
    client: Client,
) -> None:
    src = source(client)
    src.commit({(TOPIC, 0): 10}, sync=False)
    src.rejoin()
    client.answer(0, CommitFailedError("not part of an active group"))  # of the old generation
    src.commit({(TOPIC, 0): 12}, sync=False)  # no StaleMemberError: the new membership is fine
    assert offsets_sent(client, 1) == {0: 12}
    client.answer(1, CommitFailedError("kicked out"))  # one of the current membership still counts
    with pytest.raises(StaleMemberError):
        src.commit({(TOPIC, 0): 14}, sync=False)
