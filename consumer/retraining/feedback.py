"""The retrain worker's reader of ``feedback_topic``: labels into Mongo, counts, suppressions.

Each message (:mod:`consumer.wire.feedback`) is handled once per delivery and its offset committed
after Mongo took it (at-least-once; storing is idempotent, see ``consumer.adapters.mongo.feedback``):

1. the **model version** is the message's, else the audited anomaly's (Mongo ``anomalies``: the
   event whose ``episode_id``, or with ``every-update`` whose ``anomaly_id``, is the label's), else ``unknown``; the
   item id and the scored item state come from the message or the audit the same way;
2. the label is stored under ``_id = episode_id`` and the version's counts are recounted into its
   model registry document (``model_versions.feedback``) and counted in
   ``stockwatch_feedback_total{label,model_version}`` (new or changed labels only);
3. a ``false_positive`` with ``suppress_for_s > 0`` and a known item becomes a suppression
   (Mongo ``suppressions``, :mod:`consumer.wire.suppressions`); any other label of the same episode
   (``confirmed``, or ``false_positive`` without a window) lifts it: it expires at the relabel's time.

A message that is not a label is logged and skipped (committed: it would be refused forever); a
Mongo outage leaves the rest of the batch pending, retried on the next step.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter

from consumer.ports import KafkaUnavailableError, MongoUnavailableError
from consumer.wire.feedback import (
    UNKNOWN_MODEL_VERSION,
    FeedbackError,
    FeedbackLabel,
    FeedbackMessage,
    parse_feedback,
)
from consumer.wire.suppressions import suppression_from_feedback

__all__ = ["FeedbackDB", "FeedbackFeed", "FeedbackReader", "feedback_counter"]

log = logging.getLogger(__name__)

POLL_S = 0.1  # kafka-python polls of 0 s between other work never finish joining the group


class FeedbackFeed(Protocol):
    """``consumer.adapters.kafka.ControlSource`` on the feedback topic (its own consumer group)."""

    def poll(self, timeout_s: float) -> list[tuple[int, int, bytes | None]]: ...
    def commit(self, partition: int, offset: int) -> None: ...


class FeedbackDB(Protocol):
    """The Mongo side (``consumer.adapters.mongo.WorkerMongo``)."""

    def anomaly_record(self, anomaly_id: str, collection: str) -> dict[str, Any] | None: ...
    def record_feedback(self, doc: Mapping[str, Any]) -> bool: ...
    def count_feedback(self, model_version: str) -> dict[str, Any]: ...
    def store_suppression(self, doc: Mapping[str, Any]) -> None: ...
    def lift_suppression(self, episode_id: str, when: str, who: str | None) -> bool: ...


def feedback_counter(registry: CollectorRegistry | None = None) -> Counter:
    """``stockwatch_feedback_total{label,model_version}`` (register it where the worker serves /metrics)."""
    return Counter(
        "stockwatch_feedback",
        "Analyst labels received (new or changed), per label and model version",
        ["label", "model_version"],
        registry=registry if registry is not None else CollectorRegistry(),
    )


class FeedbackReader:
    """Polls the feedback feed, stores each label; see the module docstring."""

    def __init__(
        self,
        *,
        feed: FeedbackFeed,
        db: FeedbackDB,
        audit_collection: str = "anomalies",
        counter: Counter | None = None,
    ) -> None:
        self.feed, self.db, self.audit_collection = feed, db, audit_collection
        self.counter = counter if counter is not None else feedback_counter()
        self._pending: list[tuple[int, int, bytes | None]] = []

    def step(self, timeout_s: float = POLL_S) -> int:
        """Handle the pending records, then newly polled ones; returns how many were settled."""
        if not self._pending:
            try:
                self._pending = self.feed.poll(timeout_s)
            except KafkaUnavailableError as exc:
                log.warning("feedback topic unavailable: %s", exc)
                return 0
        done = 0
        while self._pending:
            partition, offset, value = self._pending[0]
            try:
                self.handle(value, where=f"[{partition}]@{offset}")
            except MongoUnavailableError as exc:
                log.warning("feedback [%d]@%d not stored yet (Mongo): %s", partition, offset, exc)
                return done
            except Exception as exc:  # one message must never stop the worker: skipped, and said so
                log.error("skipping feedback [%d]@%d that could not be handled: %r", partition, offset, exc)
            self._pending.pop(0)
            done += 1
            try:
                self.feed.commit(partition, offset)
            except KafkaUnavailableError as exc:  # read again later: storing it twice is harmless
                log.warning("could not commit feedback [%d]@%d: %s", partition, offset, exc)
        return done

    def handle(self, value: bytes | None, *, where: str = "") -> FeedbackMessage | None:
        """Store one raw message; None when it is not a label (logged). MongoUnavailableError propagates."""
        try:
            message = parse_feedback(value)
        except FeedbackError as exc:
            log.warning("skipping feedback %s that is not a label: %s", where, exc)
            return None
        audit = self.db.anomaly_record(message.episode_id, self.audit_collection) or {}
        version = message.model_version or audit.get("model_version") or UNKNOWN_MODEL_VERSION
        item_id = message.item_id or audit.get("item_id")
        doc = {
            "_id": message.episode_id,
            "label": message.label.value,
            "model_version": str(version),
            "item_id": item_id,
            "item": audit.get("item"),  # the scored state, for the gate's labelled precision
            "features": audit.get("features"),  # what the serving model computed (a change's, for default)
            "who": message.who,
            "when": message.when.isoformat(),
            "note": message.note,
            "reason": message.reason,
        }
        if self.db.record_feedback(doc):
            self.counter.labels(message.label.value, str(version)).inc()
        counts = self.db.count_feedback(str(version))
        log.info(
            "feedback %s: %s on %s (model %s, item %s): %s",
            where,
            message.label.value,
            message.episode_id,
            version,
            item_id,
            counts,
        )
        if message.label is FeedbackLabel.FALSE_POSITIVE and message.suppress_for_s > 0:
            self._suppress(message, item_id)
        elif self.db.lift_suppression(message.episode_id, message.when.isoformat(), message.who):
            # a relabel without a window (confirmed, or --suppress-for 0) ends the episode's earlier one
            log.info(
                "lifted the suppression of episode %s (relabelled %s)",
                message.episode_id,
                message.label.value,
            )
        return message

    def _suppress(self, message: FeedbackMessage, item_id: str | None) -> None:
        if not item_id:
            log.warning(
                "cannot suppress episode %s: its item is unknown (pass --item, or turn on audit_anomalies)",
                message.episode_id,
            )
            return
        suppression = suppression_from_feedback(
            episode_id=message.episode_id,
            item_id=str(item_id),
            suppress_for_s=message.suppress_for_s,
            when=message.when,
            reason=message.reason,
            who=message.who,
            note=message.note,
        )
        self.db.store_suppression(suppression.as_doc())
        log.info("suppressed item %s until %s", item_id, suppression.expires_at.isoformat())
