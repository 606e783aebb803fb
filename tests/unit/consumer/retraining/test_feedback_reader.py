"""The worker's feedback reader: version resolution, idempotent counting, suppressions, outages."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from consumer.ports import MongoUnavailableError
from consumer.retraining.feedback import FeedbackReader
from consumer.wire.feedback import build_feedback

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def label(episode: str, kind: str, **kw: Any) -> bytes:
    return orjson.dumps(build_feedback(episode, kind, who="ana@host", now=NOW, **kw))


class Feed:
    def __init__(self, values: list[bytes | None]) -> None:
        self.batches = [[(0, i, v) for i, v in enumerate(values)]]
        self.commits: list[int] = []

    def poll(self, timeout_s: float) -> list[tuple[int, int, bytes | None]]:
        return self.batches.pop(0) if self.batches else []

    def commit(self, partition: int, offset: int) -> None:
        self.commits.append(offset)


class DB:
    def __init__(self, audit: dict[str, dict[str, Any]] | None = None) -> None:
        self.audit = audit or {}
        self.feedback: dict[str, dict[str, Any]] = {}
        self.suppressions: list[dict[str, Any]] = []
        self.down = False

    def anomaly_record(self, anomaly_id: str, collection: str) -> dict[str, Any] | None:
        if self.down:
            raise MongoUnavailableError("down")
        return self.audit.get(anomaly_id)

    def record_feedback(self, doc: Mapping[str, Any]) -> bool:
        fresh = self.feedback.get(doc["_id"]) != doc
        self.feedback[doc["_id"]] = dict(doc)
        return fresh

    def count_feedback(self, model_version: str) -> dict[str, Any]:
        docs = [d for d in self.feedback.values() if d["model_version"] == model_version]
        return {k: sum(d["label"] == k for d in docs) for k in ("confirmed", "false_positive")}

    def store_suppression(self, doc: Mapping[str, Any]) -> None:
        self.suppressions.append(dict(doc))

    def lift_suppression(self, episode_id: str, when: str, who: str | None) -> bool:
        for doc in self.suppressions:
            if doc["_id"] == episode_id and doc["expires_at"] > when:
                doc.update(expires_at=when, lifted_by=who)
                return True
        return False


def counts(reader: FeedbackReader) -> dict[tuple[str, str], float]:
    return {
        (s.labels["label"], s.labels["model_version"]): s.value
        for m in reader.counter.collect()
        for s in m.samples
        if s.name == "stockwatch_feedback_total"
    }


def test_versions_come_from_the_message_the_audit_or_unknown() -> None:
    audit = {"ep-a": {"model_version": "v-audit", "item_id": "SKU-A", "item": {"item_id": "SKU-A"},
                      "features": {"stock_step": 2.5}}}  # fmt: skip
    feed = Feed(
        [
            label("ep-a", "confirmed"),
            label("ep-b", "confirmed", model_version="v-msg"),
            label("ep-c", "false_positive"),
        ]
    )
    db = DB(audit)
    reader = FeedbackReader(feed=feed, db=db)
    assert reader.step() == 3
    assert {k: d["model_version"] for k, d in db.feedback.items()} == {
        "ep-a": "v-audit",
        "ep-b": "v-msg",
        "ep-c": "unknown",
    }
    assert db.feedback["ep-a"]["item"] == {"item_id": "SKU-A"}
    assert db.feedback["ep-a"]["features"] == {"stock_step": 2.5}  # the default gate's labelled row
    assert counts(reader) == {
        ("confirmed", "v-audit"): 1,
        ("confirmed", "v-msg"): 1,
        ("false_positive", "unknown"): 1,
    }
    assert feed.commits == [0, 1, 2]


def test_a_redelivered_label_is_not_counted_twice_a_relabel_is() -> None:
    msg = label("ep", "confirmed", model_version="v")
    feed = Feed([msg, msg, label("ep", "false_positive", model_version="v")])
    reader = FeedbackReader(feed=feed, db=DB())
    reader.step()
    assert counts(reader) == {("confirmed", "v"): 1, ("false_positive", "v"): 1}


def test_false_positive_with_a_window_and_a_known_item_is_suppressed() -> None:
    feed = Feed(
        [
            label("ep-1", "false_positive", suppress_for_s=3600, item_id="SKU-1", reason="stock"),
            label("ep-2", "false_positive", suppress_for_s=3600),  # item unknown: cannot suppress
            label("ep-3", "false_positive", item_id="SKU-3"),  # no window
        ]
    )
    db = DB()
    FeedbackReader(feed=feed, db=db).step()
    [sup] = db.suppressions
    assert (sup["_id"], sup["item_id"], sup["reason"]) == ("ep-1", "SKU-1", "stock")
    assert sup["expires_at"] == "2026-12-01T13:00:00+00:00"


def test_a_relabel_without_a_window_lifts_the_episodes_suppression() -> None:
    suppress = label("ep-1", "false_positive", suppress_for_s=3600, item_id="SKU-1")
    for relabel in (label("ep-1", "confirmed"), label("ep-1", "false_positive", suppress_for_s=0)):
        db = DB()
        FeedbackReader(feed=Feed([suppress, label("ep-9", "confirmed"), relabel]), db=db).step()
        [sup] = db.suppressions
        assert (sup["_id"], sup["expires_at"], sup["lifted_by"]) == ("ep-1", NOW.isoformat(), "ana@host")


def test_a_label_that_cannot_be_handled_is_skipped_not_fatal() -> None:
    forged = orjson.loads(label("ep-1", "false_positive", suppress_for_s=3600, item_id="SKU-1"))
    forged["suppress_for_s"] = 1e308  # what a hand-made message may carry
    feed = Feed([orjson.dumps(forged), label("ep-2", "confirmed", model_version="v")])
    reader = FeedbackReader(feed=feed, db=DB())
    assert reader.step() == 2 and feed.commits == [0, 1]
    assert counts(reader) == {("confirmed", "v"): 1}


def test_junk_is_skipped_and_committed_a_mongo_outage_keeps_the_rest_pending() -> None:
    feed = Feed([b"not json", None, label("ep", "confirmed")])
    db = DB()
    db.down = True
    reader = FeedbackReader(feed=feed, db=db)
    assert reader.step() == 2  # the two junk records are settled, the label waits for Mongo
    assert feed.commits == [0, 1] and not db.feedback
    db.down = False
    assert reader.step() == 1
    assert feed.commits == [0, 1, 2] and "ep" in db.feedback
