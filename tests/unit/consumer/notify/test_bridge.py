"""The bridge's decisions with a fake feed and webhook: retries, dead payloads, dedupe, commits."""

from __future__ import annotations

from typing import Any

import orjson

from consumer.notify.bridge import NotifyBridge
from consumer.notify.webhook import Outcome, PostResult


def ev(i: int) -> bytes:
    return orjson.dumps({"anomaly_id": f"id-{i}", "item_id": f"SKU-{i}", "severity": "low", "reasons": ["x"]})


class Feed:
    topic = "anomalies"

    def __init__(self, batches: list[list[tuple[int, int, bytes | None]]]) -> None:
        self.batches, self.commits, self.paused, self.owned = batches, [], False, {0, 1}
        self.pauses = 0

    def poll(self, timeout_s: float) -> list[tuple[int, int, bytes | None]]:
        return [] if self.paused or not self.batches else self.batches.pop(0)

    def commit(self, partition: int, offset: int) -> None:
        self.commits.append((partition, offset))

    def assignment(self) -> set[int]:
        return self.owned

    def pause_all(self) -> None:
        self.paused, self.pauses = True, self.pauses + 1

    def resume_all(self) -> None:
        self.paused = False


class Hook:
    safe_url = "http://hook/***"

    def __init__(self, script: list[Outcome]) -> None:
        self.script, self.posted = script, []

    def post(self, body: bytes) -> PostResult:
        outcome = self.script.pop(0) if self.script else Outcome.DELIVERED
        if outcome is Outcome.DELIVERED:
            self.posted.append(orjson.loads(body)["anomaly_id"])
        return PostResult(outcome, "HTTP 200" if outcome is Outcome.DELIVERED else "HTTP 503")


def bridge(feed: Feed, hook: Hook, sleeps: list[float]) -> NotifyBridge:
    b = NotifyBridge(feed=feed, webhook=hook, first_backoff_s=1, max_backoff_s=4, poll_s=0)
    b._wait_in_group = lambda delay, partition, where: sleeps.append(delay) or True  # type: ignore[method-assign]
    return b


def test_failures_are_retried_with_capped_backoff_then_committed_in_order() -> None:
    feed = Feed([[(0, 0, ev(0)), (0, 1, ev(1))]])
    hook, sleeps = Hook([Outcome.RETRY] * 5), []
    stats = bridge(feed, hook, sleeps).run(max_events=2)
    assert hook.posted == ["id-0", "id-1"] and feed.commits == [(0, 0), (0, 1)]
    assert sleeps == [1, 2, 4, 4, 4] and stats.retries == 5 and stats.delivered == 2
    assert feed.pauses == 1 and not feed.paused  # paused while retrying, resumed after


def test_a_dead_payload_is_skipped_and_committed() -> None:
    feed = Feed([[(0, 0, ev(0)), (0, 1, ev(1))]])
    hook = Hook([Outcome.DEAD])
    stats = bridge(feed, hook, []).run(max_events=2)
    assert hook.posted == ["id-1"] and feed.commits == [(0, 0), (0, 1)] and stats.dead == 1


def test_redelivered_events_are_not_posted_twice_within_a_run() -> None:
    feed = Feed([[(0, 0, ev(0)), (0, 1, ev(1))], [(0, 0, ev(0)), (0, 1, ev(1)), (0, 2, ev(2))]])
    hook = Hook([])
    stats = bridge(feed, hook, []).run(max_events=5)
    assert hook.posted == ["id-0", "id-1", "id-2"] and stats.duplicates == 2
    assert len(feed.commits) == 5


def test_junk_is_skipped_and_committed() -> None:
    feed = Feed([[(0, 0, b"nope"), (0, 1, None), (0, 2, b'{"no": "id"}'), (0, 3, ev(3))]])
    hook = Hook([])
    stats = bridge(feed, hook, []).run(max_events=4)
    assert stats.invalid == 3 and hook.posted == ["id-3"] and len(feed.commits) == 4


def test_stopping_while_retrying_leaves_the_record_uncommitted() -> None:
    feed = Feed([[(0, 0, ev(0))]])
    hook = Hook([Outcome.RETRY] * 100)
    b = NotifyBridge(feed=feed, webhook=hook, first_backoff_s=0.01, max_backoff_s=0.02, poll_s=0)
    calls: list[Any] = []

    def stop_after_three(*args: Any) -> list[Any]:
        calls.append(args)
        if len(calls) > 3:
            b.stop_event.set()
        return []

    feed.poll = stop_after_three  # type: ignore[method-assign]
    feed.batches = []
    b._backlog = [(0, 0, ev(0))]
    stats = b.run(timeout_s=10)
    assert feed.commits == [] and hook.posted == [] and stats.retries >= 1


def test_a_partition_taken_away_while_retrying_is_dropped_uncommitted() -> None:
    feed = Feed([[(1, 0, ev(0)), (0, 5, ev(5))]])
    hook = Hook([Outcome.RETRY])
    b = NotifyBridge(feed=feed, webhook=hook, first_backoff_s=0.01, max_backoff_s=0.02, poll_s=0)
    feed.owned = {0}  # partition 1 goes to another member during the first wait
    stats = b.run(max_events=1, timeout_s=10)
    assert hook.posted == ["id-5"] and feed.commits == [(0, 5)] and stats.delivered == 1
