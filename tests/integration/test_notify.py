"""`stockwatch notify` on the real broker against a local webhook that fails, goes down and comes back."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from consumer.adapters.kafka import GroupFeed
from consumer.cli import main
from consumer.notify import NotifyBridge, Webhook
from tests.fakes import anomaly_events
from tests.schemas import validate

pytestmark = pytest.mark.integration

TOKEN = "T0KEN-s3cr3t"


class Hook:
    """A webhook on a fixed port: answers ``status`` (or a per-id override), can go down and come back."""

    def __init__(self) -> None:
        self.status = 200
        self.status_for: dict[str, int] = {}
        self.accepted: list[str] = []  # anomaly ids answered 2xx, in order
        self.attempts: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    aid = body.get("anomaly_id", "?")
                    outer.attempts[aid] += 1
                    status = outer.status_for.get(aid, outer.status)
                    if 200 <= status < 300:
                        outer.accepted.append(aid)
                        outer.bodies.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None: ...

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{TOKEN}?token={TOKEN}"


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.stop()


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for i, value in enumerate(values):
            producer.send(topic, key=f"SKU-{i}".encode(), value=value)
        producer.flush()
    finally:
        producer.close()


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in parts)
    finally:
        consumer.close()


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout_s}s")
        time.sleep(0.1)


def start_bridge(
    bootstrap: str, topic: str, group: str, url: str
) -> tuple[NotifyBridge, GroupFeed, threading.Thread]:
    feed = GroupFeed(bootstrap, topic, group_id=group, client_id="test-notify")
    bridge = NotifyBridge(
        feed=feed, webhook=Webhook(url, timeout_s=2), first_backoff_s=0.2, max_backoff_s=1.0, poll_s=0.2
    )
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    return bridge, feed, thread


def stop_bridge(bridge: NotifyBridge, feed: GroupFeed, thread: threading.Thread) -> None:
    bridge.stop_event.set()
    thread.join(30)
    assert not thread.is_alive(), "the bridge did not stop"
    feed.close()


def test_a_failing_then_absent_webhook_loses_nothing_and_gets_nothing_twice(
    kafka_bootstrap: str, topic_factory: Any, unique_name: Any, hook: Hook, caplog: Any
) -> None:
    topic, group = topic_factory("anomalies", partitions=2), unique_name("notify")
    n = 40
    events = anomaly_events(n)
    dead = events[7]["anomaly_id"]
    hook.status_for[dead] = 400  # a payload this webhook will never take
    produce(kafka_bootstrap, topic, [orjson.dumps(e) for e in events] + [b"not an event"])

    bridge, feed, thread = start_bridge(kafka_bootstrap, topic, group, hook.url)
    try:
        wait_for("the first deliveries", lambda: len(hook.accepted) >= 10)
        hook.status = 500  # the webhook fails...
        wait_for("three refused attempts", lambda: sum(hook.attempts.values()) - len(hook.accepted) >= 4)
        hook.stop()  # ... then goes away for a while (connection refused) ...
        time.sleep(3)
        assert len(hook.accepted) < n - 1
        hook.status = 200
        hook.start()  # ... and comes back on the same port
        wait_for("every event delivered", lambda: len(hook.accepted) == n - 1)
        wait_for("every offset committed", lambda: committed_total(kafka_bootstrap, group, topic) == n + 1)
    finally:
        stop_bridge(bridge, feed, thread)

    assert sorted(hook.accepted) == sorted(e["anomaly_id"] for e in events if e["anomaly_id"] != dead)
    assert hook.attempts[dead] == 1  # a 400 is not retried
    assert bridge.stats.retries >= 4 and bridge.stats.dead == 1 and bridge.stats.invalid == 1
    for body in hook.bodies:
        assert body["text"].startswith("[HIGH] SKU-") and "\n" not in body["text"]
        validate("webhook-payload", body)
    assert TOKEN not in caplog.text  # the URL's token is never logged

    # a second run of the group finds everything committed: nothing is POSTed again
    before = sum(hook.attempts.values())
    bridge, feed, thread = start_bridge(kafka_bootstrap, topic, group, hook.url)
    time.sleep(4)
    stop_bridge(bridge, feed, thread)
    assert sum(hook.attempts.values()) == before


def test_the_notify_command_posts_and_prints_its_counts_with_a_masked_url(
    kafka_bootstrap: str, topic_factory: Any, unique_name: Any, hook: Hook, monkeypatch: Any, capsys: Any
) -> None:
    topic = topic_factory("anomalies")
    monkeypatch.setenv("STOCKWATCH_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("STOCKWATCH_ANOMALY_TOPIC", topic)
    monkeypatch.setenv("STOCKWATCH_NOTIFY_GROUP_ID", unique_name("notify"))
    monkeypatch.setenv("STOCKWATCH_NOTIFY_WEBHOOK", hook.url)  # the setting: no token on the command line
    produce(kafka_bootstrap, topic, [orjson.dumps(e) for e in anomaly_events(5)])
    assert main(["notify", "--max-events", "5", "--run-for", "60"]) == 0
    out, err = capsys.readouterr()
    summary = orjson.loads(out)
    assert summary["delivered"] == 5 and summary["notify"] == f"http://127.0.0.1:{hook.port}/***"
    assert TOKEN not in out + err
    assert len(hook.accepted) == 5
    assert main(["notify", "--webhook", "ftp://example.com/x"]) == 2
