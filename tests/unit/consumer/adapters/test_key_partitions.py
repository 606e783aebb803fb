"""A publish's keyed outputs get the partitions kafka-python's default partitioner would give them."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.errors import UnknownTopicOrPartitionError
from kafka.future import Future
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as reference_murmur2

from consumer.adapters.kafka.key_partitions import MAX_KEY_BYTES, MIN_KEYS, key_partitions, murmur2
from consumer.adapters.kafka.send_outputs import send_one
from consumer.ports import OutputRecord


@given(st.lists(st.binary(max_size=64), max_size=80))
def test_murmur2_is_the_java_clients(keys: list[bytes]) -> None:
    assert murmur2(keys).tolist() == [reference_murmur2(k) & 0xFFFFFFFF for k in keys]


def test_murmur2_of_every_tail_length_and_non_ascii_keys() -> None:
    keys = [b"", b"a", b"ab", b"abc", b"abcd", b"abcde", "sku-ü-42".encode(), bytes(range(256))]
    assert murmur2(keys).tolist() == [reference_murmur2(k) & 0xFFFFFFFF for k in keys]


class _Cluster:
    """The metadata DefaultPartitioner reads, for topics with the given partitions."""

    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self.partitions = partitions

    def topics(self) -> set[str]:
        return set(self.partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions.get(topic)

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions.get(topic, set())


def _default(cluster: _Cluster, o: OutputRecord) -> Any:
    return DefaultPartitioner().partition(o.topic, o.key, o.key, o.value, o.value, cluster)


def test_keyed_outputs_get_the_default_partitioners_partition() -> None:
    cluster = _Cluster({"anomalies": {0, 1, 2, 3, 4, 5, 6}, "decisions": {3, 1, 2}})  # any order, any ids
    outputs = [
        OutputRecord("anomalies" if i % 3 else "decisions", f"sku-{i}".encode(), b"{}") for i in range(90)
    ]
    got = key_partitions(outputs, cluster.partitions_for_topic)
    assert got == [_default(cluster, o) for o in outputs]
    assert len(set(got)) > 3  # spread over the partitions, not one


def test_own_partitions_missing_keys_and_unknown_topics_are_left_alone() -> None:
    cluster = _Cluster({"anomalies": {0, 1}})
    outputs = [OutputRecord("anomalies", f"sku-{i}".encode(), b"{}") for i in range(MIN_KEYS)]
    outputs += [
        OutputRecord("state", b"sku-1", b"packed", partition=5),  # the changelog names its partition
        OutputRecord("anomalies", None, b"{}"),  # no key: the producer's sticky partitioner decides
        OutputRecord("dlq", b"sku-2", b"{}"),  # metadata not known yet: the producer waits for it
    ]
    got = key_partitions(outputs, cluster.partitions_for_topic)
    assert got[-3:] == [5, None, None]
    assert got[:MIN_KEYS] == [_default(cluster, o) for o in outputs[:MIN_KEYS]]


def test_a_few_keys_are_left_to_the_producer() -> None:
    cluster = _Cluster({"anomalies": {0, 1}})
    outputs = [OutputRecord("anomalies", f"sku-{i}".encode(), b"{}") for i in range(MIN_KEYS - 1)]
    assert key_partitions(outputs, cluster.partitions_for_topic) == [None] * (MIN_KEYS - 1)


def test_long_keys_are_left_to_the_producer() -> None:
    # keys are padded to the longest: one ~1 MB dead-letter key must not cost n x 1 MB
    cluster = _Cluster({"dlq": {0, 1, 2}})
    outputs = [OutputRecord("dlq", f"sku-{i}".encode(), b"{}") for i in range(MIN_KEYS)]
    outputs.append(OutputRecord("dlq", b"k" * (MAX_KEY_BYTES + 1), b"{}"))
    got = key_partitions(outputs, cluster.partitions_for_topic)
    assert got[-1] is None
    assert got[:-1] == [_default(cluster, o) for o in outputs[:-1]]


class _ShrunkProducer:
    """A producer whose topic lost partitions after they were computed: it refuses them by number."""

    def __init__(self) -> None:
        self.sent: list[int | None] = []

    def send(self, topic: str, *, partition: int | None = None, **_: object) -> Future:
        if partition is not None and partition >= 2:
            raise ValueError(f"Unrecognized partition {partition} for topic {topic}")
        self.sent.append(partition)
        return Future().success(None)


def _no_refresh() -> None:
    raise AssertionError("no metadata refresh expected")


def test_a_refused_computed_partition_falls_back_to_the_producers_partitioner() -> None:
    producer = _ShrunkProducer()
    outputs = [OutputRecord("anomalies", b"k", b"{}"), OutputRecord("anomalies", b"k", b"{}")]
    known = {"anomalies": {0, 1}}.get
    futures = [
        send_one(producer.send, o, p, known, _no_refresh) for o, p in zip(outputs, [3, 1], strict=True)
    ]
    assert producer.sent == [None, 1] and all(f.succeeded() for f in futures)


def test_an_outputs_own_partition_missing_from_the_metadata_is_retriable_after_a_refresh() -> None:
    # e.g. the state changelog's partition of an input partition added since the last refresh:
    # kafka-python's ValueError stopped the service; the batch is retried instead
    producer, refreshed = _ShrunkProducer(), []
    record = OutputRecord("anomalies.state", b"k", b"{}", partition=5)
    with pytest.raises(UnknownTopicOrPartitionError, match=r"partition 5 of anomalies\.state") as caught:
        send_one(producer.send, record, 5, {"anomalies.state": {0, 1}}.get, lambda: refreshed.append(1))
    assert caught.value.retriable and refreshed == [1] and producer.sent == []


def test_another_refusal_of_an_outputs_own_partition_is_raised_as_is() -> None:
    producer = _ShrunkProducer()  # refuses 5 although the metadata (below) has it: not a stale view
    with pytest.raises(ValueError, match="Unrecognized partition"):
        send_one(
            producer.send,
            OutputRecord("anomalies", b"k", b"{}", partition=5),
            5,
            {"anomalies": {5}}.get,
            _no_refresh,
        )
