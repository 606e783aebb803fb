"""What the scoring loop needs from the outside world, as protocols (the adapters implement them).

``consumer.adapters.kafka`` (kafka-python, the default) and ``consumer.adapters.confluent`` (librdkafka,
``STOCKWATCH_KAFKA_CLIENT=confluent-kafka``) each provide a :class:`Source` and the two sinks of
:class:`Sink` (at-least-once, exactly-once), whose ``publish`` returns a :class:`Delivery`;
``consumer.adapters.mongo`` provides :class:`Audit` (``AnomalyAudit``). Tests can hand in fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "Audit",
    "ClientPropertyError",
    "Delivered",
    "Delivery",
    "DeliveryError",
    "FencedInstanceError",
    "InventoryLookup",
    "KafkaUnavailableError",
    "MongoUnavailableError",
    "MongoUriError",
    "Offsets",
    "OutputFailure",
    "OutputRecord",
    "PartitionListener",
    "Sink",
    "Source",
    "SourceRecord",
    "StaleMemberError",
    "StateChangelog",
    "TopicPart",
    "UnreadBatch",
    "start_offset",
]

TopicPart = tuple[str, int]
Offsets = Mapping[TopicPart, int]  # (topic, partition) -> next offset to read


@dataclass(slots=True)  # not frozen: a frozen __init__ sets each field via object.__setattr__ (6x slower)
class OutputRecord:
    """One record to produce (treat it as immutable; the change path builds one per changed item)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None  # None: the producer's partitioner picks (by key)


class SourceRecord(Protocol):
    """What a consumed record must offer (kafka-python's ConsumerRecord does)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...


@dataclass(frozen=True, slots=True)
class UnreadBatch:
    """A :class:`SourceRecord` standing for a record batch the source skipped unread (e.g. a
    compressed batch that would inflate beyond ``max_decompressed_batch_bytes``): it is
    dead-lettered with ``reason`` and ``error``, and committing past it settles the whole batch."""

    topic: str
    partition: int
    offset: int  # the batch's last offset
    first_offset: int
    reason: str  # a DlqReason value
    error: str
    timestamp: int | None = None
    key: bytes | None = None
    value: bytes | None = None
    headers: Sequence[tuple[str, bytes]] | None = None


def start_offset(record: Any) -> int:
    """Where to seek to read ``record`` again: an unread batch from its first offset (read again from
    its last, the source would name only that offset and skip the rest of the batch unrecorded)."""
    return record.first_offset if isinstance(record, UnreadBatch) else int(record.offset)


@dataclass(frozen=True, slots=True)
class OutputFailure:
    """One output of a batch the broker did not take, and whether sending it again can help."""

    index: int  # its position in the outputs handed to ``Sink.publish``
    kind: str  # "too_large" / "invalid": the record itself is refused (never retry it as is); "transient"
    error: str


class DeliveryError(Exception):
    """A batch was not delivered (sink or audit failed); its offsets are not committed.

    ``failures`` names the outputs that failed, when the transport can tell.
    """

    def __init__(self, *args: object, failures: Sequence[OutputFailure] = ()) -> None:
        super().__init__(*args)
        self.failures = tuple(failures)


class StaleMemberError(DeliveryError):
    """The group refused a commit of this member: it is not (or no longer) in the group's current
    generation (a rebalance went on without it). Its assignment can't be trusted: it must re-join."""


class FencedInstanceError(DeliveryError):
    """Another instance joined with this one's ``group_instance_id``: this one must stop consuming."""


class KafkaUnavailableError(RuntimeError):
    """The broker could not be reached or did not acknowledge (retriable: try again later)."""


class ClientPropertyError(ValueError):
    """A value of ``kafka_client_properties`` a Kafka client cannot use (a setting to fix, never retried)."""


class MongoUnavailableError(RuntimeError):
    """Mongo could not be reached or refused an operation (retriable: try again later)."""


class MongoUriError(ValueError):
    """The Mongo URI cannot be parsed: a setting to fix, never retried (its text holds no URI)."""


class PartitionListener(Protocol):
    """What the source tells the loop about assignment changes (called inside ``Source.poll``)."""

    def on_assigned(self, partitions: Sequence[TopicPart]) -> None: ...
    def on_revoked(self, partitions: Sequence[TopicPart]) -> dict[TopicPart, int]:
        """The partitions go to another member: the offsets the source should commit first."""
        ...

    def on_lost(self, partitions: Sequence[TopicPart]) -> None:
        """The partitions were taken away without notice (expired session): nothing may be committed."""
        ...


class Source(Protocol):
    """The input side (``consumer.adapters.kafka.KafkaSource``)."""

    def subscribe(self, listener: PartitionListener | None = None) -> None: ...
    def rejoin(self) -> None:
        """Drop the assignment at once and join the group again (a stale member)."""
        ...

    def group_state(self) -> str:
        """``stable``, ``joining`` or ``coordinator unknown``: the membership as the client last heard it."""
        ...

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPart, list[Any]]: ...
    def assignment(self) -> set[TopicPart]: ...
    def pause_all(self) -> None: ...
    def resume_all(self) -> None: ...
    def seek(self, offsets: Mapping[TopicPart, int]) -> None: ...
    def committed(self, partitions: Sequence[TopicPart]) -> dict[TopicPart, int | None]: ...
    def lag(self) -> dict[TopicPart, int]: ...
    def close(self) -> None: ...


class Delivery(Protocol):
    """The acknowledgements of one batch's outputs (``consumer.adapters.kafka.PendingDelivery``)."""

    def done(self) -> bool: ...
    def error(self) -> BaseException | None: ...
    def wait(self) -> None: ...


class Delivered:
    """A delivery already complete when ``publish`` returns (a transaction committed inside it)."""

    def done(self) -> bool:
        return True

    def error(self) -> BaseException | None:
        return None

    def wait(self) -> None:
        return None


class Sink(Protocol):
    """Publishes a batch's outputs; commits offsets once they are acknowledged."""

    def publish(
        self, outputs: Sequence[OutputRecord], offsets: Mapping[TopicPart, int], source: Any
    ) -> Delivery: ...
    def commit(self, offsets: Mapping[TopicPart, int], source: Any, *, sync: bool) -> None: ...
    def interrupt(self) -> None: ...  # stopping: give up waits on a wedged broker soon (signal-safe)
    def discard(self) -> bool: ...  # exactly-once: abort the open transaction (True: there was one)
    def close(self, timeout_s: float = 10.0) -> None: ...


class Audit(Protocol):
    """Optional idempotent audit store for anomalies (``consumer.adapters.mongo.AnomalyAudit``)."""

    def write(self, anomalies: Sequence[dict[str, Any]]) -> int: ...
    def close(self) -> None: ...


class StateChangelog(Protocol):
    """The compacted topic behind the per-item state (``consumer.adapters.kafka.KafkaChangelog``)."""

    @property
    def topic(self) -> str: ...
    def read(
        self, partition: int, *, tick: Callable[[], None] = ...
    ) -> tuple[list[bytes | None], list[bytes | None]]: ...
    def end_offset(self, partition: int) -> int: ...  # the offset the next record will get (a lower bound)
    def truncate(self, partition: int, before: int) -> bool: ...  # DeleteRecords; False: the topic refuses
    def close(self) -> None: ...


class InventoryLookup(Protocol):
    """Inventory documents by item id (``consumer.adapters.mongo.WorkerMongo``): the state's seed."""

    def find_items(self, item_ids: Sequence[str], *, fields: Sequence[str] = ()) -> list[dict[str, Any]]: ...
