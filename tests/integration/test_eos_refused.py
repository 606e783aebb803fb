"""A record the broker refuses inside a transaction never wedges the kafka-python exactly-once sink.

The sequence of the chaos scenario "poison: 5 MB gzip update, exactly-once", against the real
broker (``message.max.bytes`` 2 MiB): a transaction whose dead letter is too large (with events
before and after it, so batches are still queued when the refusal comes back), then the retry
with a reduced dead letter — several rounds with one transactional producer. kafka-python 3.0
left ``commit_transaction`` waiting for ever here (an I/O thread asleep with the EndTxn request
ready to fail; then the refused record's sequence number wedging the next transaction).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaConsumer

from config.settings import Settings
from consumer.adapters.kafka import DeliveryFailedError, TransactionalSink
from consumer.ports import OutputRecord
from consumer.wire.dlq import DLQ_HEADER_SOURCE_OFFSET, DLQ_HEADER_SOURCE_PARTITION, DLQ_HEADER_SOURCE_TOPIC
from tests.integration.test_consume import committed, read_topic

pytestmark = pytest.mark.integration

ROUNDS = 4
EVENTS = 60  # before and after the dead letter, in each attempt
HUNG_AFTER_S = 90.0  # far beyond every bound of the sink: a call this long is a hang


class Member:
    """A real member of the group: its metadata goes with the transaction's offsets (KIP-447)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        for _ in range(100):
            if self.consumer.assignment():
                break
            self.consumer.poll(200)
        assert self.consumer.assignment(), "the member was never assigned partitions"

    def group_metadata(self) -> Any:
        return self.consumer.group_metadata()


def outputs(topics: dict[str, str], offset: int, dead_letter_bytes: int) -> list[OutputRecord]:
    headers = [
        (DLQ_HEADER_SOURCE_TOPIC, topics["in"].encode()),
        (DLQ_HEADER_SOURCE_PARTITION, b"0"),
        (DLQ_HEADER_SOURCE_OFFSET, str(offset).encode()),
    ]
    event = OutputRecord(topics["out"], b"k", b"e" * 300, [])
    dead = OutputRecord(topics["dlq"], b"poison", b"p" * dead_letter_bytes, headers)
    return [event] * EVENTS + [dead] + [event] * EVENTS


def publish(
    sink: TransactionalSink, batch: list[OutputRecord], offsets: dict[Any, int], member: Member
) -> Any:
    """``sink.publish`` in a thread: the error its delivery reports (None), or a failure when it hangs."""
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(_call(sink, batch, offsets, member)), daemon=True)
    thread.start()
    thread.join(HUNG_AFTER_S)
    assert not thread.is_alive(), f"publish hung for {HUNG_AFTER_S:g} s"
    return got[0]


def _call(sink: TransactionalSink, batch: list[OutputRecord], offsets: dict[Any, int], member: Member) -> Any:
    delivery = sink.publish(batch, offsets, member)  # type: ignore[arg-type]
    delivery.wait()
    return delivery.error()


def test_a_refused_dead_letter_aborts_and_the_reduced_retry_commits(
    kafka_bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topics = {
        "in": topic_factory("in", partitions=1),
        "out": topic_factory("out"),
        "dlq": topic_factory("dlq"),
    }
    group = unique_name("group")
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        input_topic=topics["in"],
        anomaly_topic=topics["out"],
        dlq_topic=topics["dlq"],
        group_id=group,
        delivery="exactly-once",
        transactional_id=f"eos-refused-{uuid.uuid4().hex[:8]}",
    )
    member = Member(kafka_bootstrap, group, topics["in"])
    sink = TransactionalSink(settings.kafka)
    try:
        for n in range(ROUNDS):
            offsets = {(topics["in"], 0): 10 * (n + 1)}
            refused = publish(sink, outputs(topics, n, 5 << 20), offsets, member)
            assert isinstance(refused, DeliveryFailedError), f"round {n}: the 5 MB dead letter went through"
            kinds = {f.kind for f in refused.failures if f.index == EVENTS}
            assert kinds == {"too_large"}, f"round {n}: the dead letter's failure is {kinds or 'missing'}"
            assert publish(sink, outputs(topics, n, 64 << 10), offsets, member) is None, (
                f"round {n}: retry failed"
            )
            assert committed(kafka_bootstrap, group, topics["in"]) == offsets[(topics["in"], 0)]
    finally:
        sink.close()
        member.consumer.close()
    dead = read_topic(kafka_bootstrap, topics["dlq"], expect=ROUNDS, committed_only=True)
    assert sorted(int(dict(r.headers)[DLQ_HEADER_SOURCE_OFFSET]) for r in dead) == list(range(ROUNDS))
    assert all(len(r.value) == 64 << 10 for r in dead)
    events = read_topic(kafka_bootstrap, topics["out"], expect=2 * EVENTS * ROUNDS, committed_only=True)
    assert len(events) == 2 * EVENTS * ROUNDS  # the refused attempts' events were aborted
