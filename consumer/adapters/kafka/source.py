"""The input side of `stockwatch consume`: a group member with explicit offset commits."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    FencedInstanceIdError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from kafka.structs import MemberState, OffsetAndMetadata

from config.kafka import KafkaSettings
from consumer.adapters.kafka.bounded_codecs import install, skip_past
from consumer.adapters.kafka.client_config import kafka_python_config
from consumer.adapters.kafka.unread_batches import UnreadBatchError
from consumer.ports import (
    DeliveryError,
    FencedInstanceError,
    Offsets,
    PartitionListener,
    StaleMemberError,
    UnreadBatch,
)

log = logging.getLogger(__name__)

_SYNC_COMMIT_TIMEOUT_MS = 10_000  # a synchronous commit never blocks the loop longer than this
# Leaving is best effort: a LeaveGroup queued behind a JoinGroup the coordinator holds (until a dead
# member's session expires) waited for it, up to the request timeout: a --timeout overrun of ~30 s.
_CLOSE_TIMEOUT_MS = 3_000
_ASYNC_COMMIT_STALE_S = 10.0  # an async commit without a callback this long is not waited for


class OffsetCommitError(DeliveryError):
    """The offsets were not committed (the outputs were delivered); retried by the loop."""


class DeliveryFailedError(DeliveryError):
    """A batch's outputs or commit did not go through; nothing of it counts as consumed."""


# A commit refused with one of these: the group went on without this member (see StaleMemberError).
STALE_MEMBER_ERRORS = (
    CommitFailedError,
    RebalanceInProgressError,
    IllegalGenerationError,
    UnknownMemberIdError,
)


def membership_error(exc: BaseException) -> DeliveryError | None:
    """The ports' error for a commit refused because of this member's group membership, if it was."""
    if isinstance(exc, FencedInstanceIdError):
        return FencedInstanceError(repr(exc))
    if isinstance(exc, STALE_MEMBER_ERRORS):
        return StaleMemberError(repr(exc))
    return None


def _pairs(tps: Iterable[TopicPartition]) -> list[tuple[str, int]]:
    return sorted((tp.topic, tp.partition) for tp in tps)


def _tp_offsets(offsets: Offsets) -> dict[TopicPartition, OffsetAndMetadata]:
    return {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}


def _log_commit_failure(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.warning("async offset commit failed (%r); a later commit covers it", response)


class _Rebalances(AsyncConsumerRebalanceListener):  # type: ignore[misc]  # kafka is untyped
    """Tells the loop about assignment changes; commits what it hands back before letting go.

    kafka-python runs these on its I/O thread (while the loop waits in ``poll``), where a blocking
    call is refused: the commit is awaited instead, before the JoinGroup goes out.
    """

    def __init__(self, consumer: KafkaConsumer, listener: PartitionListener) -> None:
        self._consumer = consumer
        self._listener = listener

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        offsets = self._listener.on_revoked(_pairs(revoked))
        if not offsets:
            return
        try:
            await self._consumer.commit_async(offsets=_tp_offsets(offsets))
        except KafkaError as exc:  # the new owner resumes from the last commit: a few duplicates
            log.warning(
                "commit on revocation of %s refused (%r); they resume from the last commit", offsets, exc
            )
            return
        log.info(
            "committed %s on revocation", ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(offsets.items()))
        )

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._listener.on_assigned(_pairs(assigned))

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self._listener.on_lost(_pairs(lost))


class KafkaSource:
    """The input side: a group member on the input topic with manual offset commits."""

    def __init__(
        self, kafka: KafkaSettings, *, client_id: str = "stockwatch-consume", consumer: Any = None
    ) -> None:
        self.topic = kafka.topics.input
        install(kafka.decompressed_batch_cap)  # a compressed bomb raises instead of filling memory
        self._consumer = consumer or KafkaConsumer(
            **kafka_python_config(kafka.consumer_config(client_id=client_id))
        )
        self._commit_in_flight = 0.0  # monotonic send time of the one async commit outstanding
        self._membership = 0  # counts re-joins: a commit's answer is of the membership it was sent in
        self._pending_commit: dict[TopicPartition, OffsetAndMetadata] = {}
        self._listener: _Rebalances | None = None
        self._refused: DeliveryError | None = None  # an async commit refused for membership reasons

    def subscribe(self, listener: PartitionListener | None = None) -> None:
        """Join the group on the input topic (assignment happens inside ``poll``).

        The topic's metadata is fetched first, so the first JoinGroup already sees its partitions
        (otherwise the leader assigns nothing, and a second rebalance follows at once).
        """
        if not self._consumer.partitions_for_topic(self.topic):
            log.warning("input topic %s does not exist (yet); waiting for it", self.topic)
        if listener is not None:
            self._listener = _Rebalances(self._consumer, listener)
        self._consumer.subscribe([self.topic], listener=self._listener)

    def rejoin(self) -> None:
        """Drop the assignment now (nothing more is fetched from it) and join again with the next poll.

        ``unsubscribe`` clears the assignment and leaves the group (a static member does not
        leave: its session keeps its place); ``subscribe`` makes the next ``poll`` join, and the
        partitions then assigned start from the group's committed offsets.
        """
        self._pending_commit = {}
        self._refused = None
        self._membership += 1  # what the commits in flight say is of the membership given up here
        self._commit_in_flight = 0.0
        self._consumer.unsubscribe()
        self._consumer.subscribe([self.topic], listener=self._listener)

    def group_state(self) -> str:
        """``stable``, ``joining`` or ``coordinator unknown`` (as this client last heard)."""
        coordinator = getattr(self._consumer, "_coordinator", None)  # no public accessor
        if coordinator is not None and getattr(coordinator, "coordinator_id", 0) is None:
            return "coordinator unknown"
        return "stable" if self._consumer.group_metadata().state == MemberState.STABLE else "joining"

    def poll(self, timeout_ms: int, max_records: int) -> dict[tuple[str, int], list[Any]]:
        """Up to ``max_records`` records, grouped by (topic, partition), in offset order.

        FencedInstanceError when another instance took this one's ``group_instance_id``. A compressed
        batch over ``max_decompressed_batch_bytes`` comes back alone, as one :class:`UnreadBatch`
        (dead-lettered as ``decompression_bomb``), and a batch holding a record that cannot be parsed
        (``unreadable_record``, e.g. a header key that is not UTF-8) likewise; the partition is
        already past it.
        """
        try:
            self._flush_async_commit()
            polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except FencedInstanceIdError as exc:
            raise FencedInstanceError(repr(exc)) from exc
        except UnreadBatchError as exc:
            topic, partition, first, last = skip_past(self._consumer, exc)
            unread = UnreadBatch(topic, partition, last, first, exc.reason, exc.describe())
            return {(topic, partition): [unread]}
        self._finish_abandoned_rebalance()
        return {(tp.topic, tp.partition): recs for tp, recs in polled.items() if recs}

    def _finish_abandoned_rebalance(self) -> None:
        """Make the next poll finish a rebalance kafka-python (3.0.12) started and then abandoned.

        The group leader re-joins by itself when the topic metadata changed since its last
        assignment; if the ``poll`` that started it times out first, the assignment it makes resets
        that trigger, the next ``poll`` no longer sees a reason to re-join, and the join's result is
        never applied: the member stays "rebalancing" on its old partitions, for ever (without a
        rebalance listener it went on fetching them while the broker refused every commit — the
        split brain of issue 13 defect 8). Asking for a re-join makes the next poll complete it.
        """
        coordinator = getattr(self._consumer, "_coordinator", None)  # no public accessor
        if coordinator is None or coordinator.state != MemberState.REBALANCING or coordinator.need_rejoin():
            return
        log.info("completing a rebalance the client left unfinished (generation %s)", coordinator._generation)
        coordinator.request_rejoin()

    def assignment(self) -> set[tuple[str, int]]:
        """The partitions assigned to this member right now."""
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def pause_all(self) -> None:
        """Stop fetching from every assigned partition (the group membership stays alive)."""
        tps = self._consumer.assignment()
        if tps:
            self._consumer.pause(*tps)

    def resume_all(self) -> None:
        """Fetch again from every assigned partition."""
        tps = self._consumer.paused()
        if tps:
            self._consumer.resume(*tps)

    def seek(self, offsets: Offsets) -> None:
        """Rewind (or advance) assigned partitions; others (revoked meanwhile) are skipped."""
        assigned = self._consumer.assignment()
        for (topic, partition), offset in offsets.items():
            tp = TopicPartition(topic, partition)
            if tp in assigned:
                self._consumer.seek(tp, offset)

    def committed(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """The group's committed offsets (a broker round trip)."""
        return {(t, p): self._consumer.committed(TopicPartition(t, p)) for t, p in partitions}

    def commit(self, offsets: Offsets, *, sync: bool = True) -> None:
        """Commit explicit offsets (next offset to read) of partitions still assigned to us.

        Async commits are coalesced: while one is in flight, newer offsets wait (a later commit
        covers an earlier one) and go out with the next ``commit``/``poll``. Without this, a
        fast loop of small batches sent one commit per batch and overran the connection's
        in-flight request slots: at 2k events/s (batches of ~7 records) about 40 commits a
        second failed with NodeNotReadyError("max_in_flight"), each logged as a warning.

        A commit refused for this member's membership (now, or an async one since the last call)
        raises :class:`StaleMemberError` / :class:`FencedInstanceError`.
        """
        refused, self._refused = self._refused, None
        if refused is not None:
            raise refused
        self._pending_commit.update(_tp_offsets(offsets))
        try:
            if sync:
                mine = self._take_pending()
                if mine:
                    self._consumer.commit(offsets=mine, timeout_ms=_SYNC_COMMIT_TIMEOUT_MS)
            else:
                self._flush_async_commit()
        except KafkaError as exc:
            refused = membership_error(exc)
            if refused is None:
                raise
            raise refused from exc

    def _take_pending(self) -> dict[TopicPartition, OffsetAndMetadata]:
        assigned = self._consumer.assignment()
        mine = {tp: om for tp, om in self._pending_commit.items() if tp in assigned}
        self._pending_commit = {}
        return mine

    def _flush_async_commit(self) -> None:
        if not self._pending_commit:
            return
        if self._commit_in_flight and time.monotonic() - self._commit_in_flight < _ASYNC_COMMIT_STALE_S:
            return
        mine = self._take_pending()
        if mine:
            self._commit_in_flight = time.monotonic()
            done = functools.partial(self._async_commit_done, self._membership)
            self._consumer.commit_async(offsets=mine, callback=done)

    def _async_commit_done(self, membership: int, offsets: Any, response: Any) -> None:
        """An async commit's answer. One sent before a re-join neither holds back the commits of the
        new membership nor, refused as stale (it was), makes the member re-join once more."""
        if membership != self._membership:
            outcome = "refused" if isinstance(response, Exception) else "accepted"
            log.info("a commit sent before the last re-join was %s: of no concern now", outcome)
            return
        self._commit_in_flight = 0.0
        _log_commit_failure(offsets, response)
        if isinstance(response, Exception):
            self._refused = membership_error(response) or self._refused

    def group_metadata(self) -> Any:
        """The member's group metadata, for ``send_offsets_to_transaction``."""
        return self._consumer.group_metadata()

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the high watermark, for assigned partitions whose both ends are known."""
        out = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            try:
                pos = self._consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue
            if pos is not None:
                out[(tp.topic, tp.partition)] = max(0, high - pos)
        return out

    def close(self) -> None:
        """Leave the group (a prompt rebalance for the others), within _CLOSE_TIMEOUT_MS; never
        auto-commits."""
        self._consumer.close(autocommit=False, timeout_ms=_CLOSE_TIMEOUT_MS)
