"""The input side of `stockwatch consume` on librdkafka: a group member with explicit commits."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

from config.kafka import KafkaSettings
from consumer.adapters.confluent.records import ConfluentRecord
from consumer.ports import DeliveryError, FencedInstanceError, Offsets, PartitionListener, StaleMemberError

log = logging.getLogger(__name__)

# librdkafka's own log lines go to Python logging (JSON logs like the rest), not raw stderr.
LIBRDKAFKA_LOG = logging.getLogger("consumer.adapters.confluent.librdkafka")
_TIMEOUT_S = 10.0  # a blocking broker call (sync commit, committed offsets) never waits longer
FETCH_QUEUE_BACKOFF_MS = 10
# The Java client's property names (config.KafkaSettings) that librdkafka spells differently.
_LIBRDKAFKA_NAMES = {"fetch.max.wait.ms": "fetch.wait.max.ms", "max.request.size": "message.max.bytes"}
_JAVA_ONLY = frozenset({"max.poll.records"})  # librdkafka has none: ``consume(num_messages=)`` bounds a poll


class ConfluentCommitError(DeliveryError):
    """The offsets were not committed (the outputs were delivered); retried by the loop."""


# A commit refused with one of these: the group went on without this member (see StaleMemberError).
_STALE_MEMBER = frozenset(
    (
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError._ASSIGNMENT_LOST,
    )
)


def membership_error(error: object) -> DeliveryError | None:
    """The ports' error for a commit refused because of this member's group membership, if it was."""
    if not isinstance(error, KafkaError):
        return None
    if error.code() == KafkaError.FENCED_INSTANCE_ID:
        return FencedInstanceError(str(error))
    return StaleMemberError(str(error)) if error.code() in _STALE_MEMBER else None


def _pairs(tps: list[TopicPartition]) -> list[tuple[str, int]]:
    return sorted((tp.topic, tp.partition) for tp in tps)


def _log_commit(error: Any, partitions: list[TopicPartition]) -> None:
    """librdkafka's commit callback (runs inside ``consume``/``poll``): report async failures."""
    failed = [tp for tp in partitions if tp.error is not None]
    if error is not None or failed:
        log.warning("async offset commit failed (%s %s); a later commit covers it", error, failed)


def librdkafka_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The Java client's property names of :class:`config.KafkaSettings` as librdkafka's."""
    return {
        _LIBRDKAFKA_NAMES.get(name, name): value for name, value in config.items() if name not in _JAVA_ONLY
    }


def consumer_config(kafka: KafkaSettings, *, client_id: str) -> dict[str, Any]:
    """The librdkafka consumer settings equivalent to :class:`consumer.adapters.kafka.KafkaSource`'s."""
    return {
        **librdkafka_config(kafka.consumer_config(client_id=client_id)),
        "enable.auto.offset.store": False,
        # The default 1 s backoff after a full local queue starves the loop whenever 8 MiB fetches fill it.
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        "logger": LIBRDKAFKA_LOG,
        "on_commit": _log_commit,
    }


class ConfluentSource:
    """The input side: a group member on the input topic with manual offset commits."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str = "stockwatch-consume") -> None:
        self.topic = kafka.topics.input
        self._consumer = Consumer(
            {**consumer_config(kafka, client_id=client_id), "on_commit": self._committed}
        )
        self._listener: PartitionListener | None = None
        self._state = "joining"
        self._refused: DeliveryError | None = None  # an async commit refused for membership reasons
        self._rejoining = False  # from rejoin() to the next assignment
        self._let_go: set[tuple[str, int]] = set()  # partitions revoked or lost inside the current poll

    def _committed(self, error: Any, partitions: list[TopicPartition]) -> None:
        """librdkafka's answer to a commit. Between a re-join and the next assignment, a refusal is
        of a commit sent in the membership given up (why it re-joined): no reason for another."""
        _log_commit(error, partitions)
        if self._rejoining:
            return
        for cause in [error, *(tp.error for tp in partitions)]:
            self._refused = membership_error(cause) or self._refused

    def subscribe(self, listener: PartitionListener | None = None) -> None:
        """Join the group on the input topic (assignment happens inside ``poll``, which also runs
        the listener's callbacks)."""
        self._listener = listener or self._listener
        self._consumer.subscribe(
            [self.topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    def rejoin(self) -> None:
        """Drop the assignment now and join again with the next poll (from the committed offsets)."""
        self._state = "joining"
        self._refused = None
        self._rejoining = True
        self._consumer.unsubscribe()
        self.subscribe()

    def group_state(self) -> str:
        """``stable`` between an assignment and the next revocation, else ``joining``."""
        return self._state

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._state = "stable"
        self._rejoining = False
        if self._listener is not None:
            self._listener.on_assigned(_pairs(partitions))

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Before letting go: commit what the loop settled of them (a scale-up re-processes nothing)."""
        self._state = "joining"
        self._let_go.update(_pairs(partitions))
        offsets = self._listener.on_revoked(_pairs(partitions)) if self._listener is not None else {}
        if not offsets:
            return
        try:
            self.commit(offsets, sync=True)
        except DeliveryError as exc:  # the new owner resumes from the last commit: a few duplicates
            log.warning(
                "commit on revocation of %s refused (%s); they resume from the last commit", offsets, exc
            )
            return
        log.info(
            "committed %s on revocation", ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(offsets.items()))
        )

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._state = "joining"
        self._let_go.update(_pairs(partitions))
        if self._listener is not None:
            self._listener.on_lost(_pairs(partitions))

    def poll(self, timeout_ms: int, max_records: int) -> dict[tuple[str, int], list[Any]]:
        """Up to ``max_records`` records, grouped by (topic, partition), in offset order.

        Returns as soon as anything is there (as kafka-python's ``poll`` does): librdkafka's
        ``consume(n, timeout)`` waits until ``n`` messages arrived or the timeout passed, which held
        every batch of a stream slower than ``max_records`` per ``timeout_ms`` for the full timeout.
        """
        consume = self._consumer.consume
        self._let_go.clear()
        messages = consume(num_messages=max_records, timeout=0)
        if not messages:
            first = self._consumer.poll(timeout_ms / 1000)
            if first is None:
                return {}
            messages = (
                [first, *consume(num_messages=max_records - 1, timeout=0)] if max_records > 1 else [first]
            )
        out: dict[Any, list[Any]] = {}  # (topic, partition) -> records
        for message in messages:
            error = message.error()
            if error is not None:  # not a record: a client event (e.g. a broker connection lost)
                if error.fatal():
                    if error.code() == KafkaError.FENCED_INSTANCE_ID:
                        raise FencedInstanceError(str(error))
                    raise KafkaException(error)
                log.warning("consumer: %s (%s[%s])", error, message.topic(), message.partition())
                continue
            tp = (message.topic(), message.partition())
            records = out.get(tp)
            if records is None:
                records = out[tp] = []
            records.append(ConfluentRecord(message))
        if self._let_go:
            self._drop_let_go(out)
        return out

    def _drop_let_go(self, out: dict[Any, list[Any]]) -> None:
        """librdkafka returns from one ``consume`` the records it fetched before a revocation it ran
        the callback of: their new owner reads them from the committed offset (decided here too,
        they were published twice). A partition assigned back within the same call may have
        records of both fetches: it is sought back to the first one dropped (the committed offset:
        everything before it was decided and committed at the revocation)."""
        dropped = {tp: out.pop(tp) for tp in self._let_go if tp in out}
        if not dropped:
            return
        log.info(
            "dropped the records of partitions revoked during the poll: %s",
            ", ".join(f"{t}[{p}] ({len(r)})" for (t, p), r in sorted(dropped.items())),
        )
        self.seek({tp: min(r.offset for r in records) for tp, records in dropped.items()})

    def assignment(self) -> set[tuple[str, int]]:
        """The partitions assigned to this member right now."""
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def pause_all(self) -> None:
        """Stop fetching from every assigned partition (the group membership stays alive)."""
        tps = self._consumer.assignment()
        if tps:
            self._consumer.pause(tps)

    def resume_all(self) -> None:
        """Fetch again from every assigned partition."""
        tps = self._consumer.assignment()
        if tps:
            self._consumer.resume(tps)

    def seek(self, offsets: Offsets) -> None:
        """Rewind (or advance) assigned partitions; others (revoked meanwhile) are skipped."""
        assigned = self.assignment()
        for (topic, partition), offset in offsets.items():
            if (topic, partition) not in assigned:
                continue
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                # Assigned but not fetched yet (just after a rebalance): it starts at the group's
                # committed offset, which is never past a rewind target, so nothing is skipped.
                log.warning(
                    "seek %s[%d]@%d not possible (%s); it resumes from the committed offset",
                    topic,
                    partition,
                    offset,
                    exc,
                )

    def committed(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """The group's committed offsets (a broker round trip)."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        result = self._consumer.committed(tps, timeout=_TIMEOUT_S)
        return {(tp.topic, tp.partition): None if tp.offset == OFFSET_INVALID else tp.offset for tp in result}

    def commit(self, offsets: Offsets, *, sync: bool = True) -> None:
        """Commit explicit offsets (next offset to read) of partitions still assigned to us."""
        refused, self._refused = self._refused, None
        if refused is not None:
            raise refused
        assigned = self.assignment()
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in assigned]
        if not tps:
            return
        try:
            if sync:
                for tp in self._consumer.commit(offsets=tps, asynchronous=False) or []:
                    if tp.error is not None:
                        refused = membership_error(tp.error)
                        if refused is not None:
                            raise refused
                        raise ConfluentCommitError(f"commit of {tp.topic}[{tp.partition}]: {tp.error}")
            else:  # the outcome is logged by librdkafka; a later commit covers a failed one
                self._consumer.commit(offsets=tps, asynchronous=True)
        except KafkaException as exc:
            refused = membership_error(exc.args[0] if exc.args else None)
            if refused is not None:
                raise refused from exc
            raise ConfluentCommitError(repr(exc)) from exc

    def group_metadata(self) -> Any:
        """The member's group metadata, for ``send_offsets_to_transaction``."""
        return self._consumer.consumer_group_metadata()

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the high watermark (as of the last fetch), for assigned partitions."""
        tps = self._consumer.assignment()
        if not tps:
            return {}
        out = {}
        for tp in self._consumer.position(tps):
            try:
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0 and tp.offset >= 0:
                out[(tp.topic, tp.partition)] = max(0, high - tp.offset)
        return out

    def close(self) -> None:
        """Leave the group (a prompt rebalance for the others); never auto-commits."""
        self._consumer.close()
