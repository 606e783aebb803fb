"""Delivery failures are labelled by kind, for both clients' ways of naming a cause."""

from __future__ import annotations

import kafka.errors as kafka_errors
import pytest

from consumer.adapters.kafka import DeliveryFailedError
from consumer.scoring.failure_kinds import DELIVERY_FAILURE_KINDS, delivery_failure_kind


def wrapped(cause: BaseException) -> BaseException:
    """What the kafka-python sink raises: the cause's repr in the message, chained."""
    try:
        try:
            raise cause
        except kafka_errors.KafkaError as exc:
            raise DeliveryFailedError(repr(exc)) from exc
    except DeliveryFailedError as outer:
        return outer


@pytest.mark.parametrize(
    ("cause", "kind"),
    [
        (kafka_errors.KafkaTimeoutError("Batch for TopicPartition expired"), "timeout"),
        (kafka_errors.RequestTimedOutError(), "timeout"),
        (kafka_errors.MessageSizeTooLargeError("The message is 2000000 bytes"), "too_large"),
        (kafka_errors.RecordListTooLargeError(), "too_large"),
        (kafka_errors.ProducerFencedError(), "fenced"),
        (kafka_errors.InvalidProducerEpochError(), "fenced"),
        (kafka_errors.NotLeaderForPartitionError(), "broker_unavailable"),
        (kafka_errors.KafkaConnectionError("socket disconnected"), "broker_unavailable"),
        (kafka_errors.NotEnoughReplicasError(), "broker_unavailable"),
        (kafka_errors.TopicAuthorizationFailedError(), "other"),
    ],
)
def test_kafka_python_errors(cause: kafka_errors.KafkaError, kind: str) -> None:
    assert delivery_failure_kind(wrapped(cause)) == kind


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (
            'output not acknowledged: KafkaError{code=_MSG_TIMED_OUT,val=-192,str="Local: Message timed out"}',
            "timeout",
        ),
        (
            'output not acknowledged: KafkaError{code=MSG_SIZE_TOO_LARGE,val=10,str="Broker: Message size too large"}',
            "too_large",
        ),
        (
            'KafkaError{code=_FENCED,val=-144,str="Local: This instance has been fenced by a newer instance"}',
            "fenced",
        ),
        (
            'KafkaError{code=_ALL_BROKERS_DOWN,val=-187,str="Local: All broker connections are down"}',
            "broker_unavailable",
        ),
        ("3 outputs failed inside a committed transaction", "other"),
    ],
)
def test_librdkafka_codes_in_the_message(message: str, kind: str) -> None:
    assert delivery_failure_kind(DeliveryFailedError(message)) == kind


def test_every_kind_is_in_the_fixed_set() -> None:
    assert delivery_failure_kind(RuntimeError("anything at all")) == "other"
    assert set(DELIVERY_FAILURE_KINDS) == {"fenced", "too_large", "timeout", "broker_unavailable", "other"}
