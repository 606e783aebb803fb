"""Alert episodes of `stockwatch consume` on the real broker and FerretDB (issue 12 points 1, 2, 4).

`stockwatch train --detector default` on a snapshot file, `stockwatch consume` as a process (its
model store serves the default detector, its seed is the same snapshot in Mongo); one item's
updates go normal, negative stock x3, normal x3 (``resolve_after`` = 3).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration.retrain_support import running_worker, settings_factory
from tests.integration.test_notify import Hook, hook, start_bridge, stop_bridge
from tests.integration.test_notify import wait_for as notify_wait
from tests.integration.test_state import read_all
from tests.schemas import validate
from tests.unit.consumer.scoring.state.stream import snapshot_docs

pytestmark = pytest.mark.integration
__all__ = ["hook", "settings_factory"]  # the fixtures, re-exported for pytest

REPO = Path(__file__).resolve().parents[2]
ITEM = "sku-3"  # a TV of the snapshot (tens of units)
EPISODE = (20, -5, -6, -7, 21, 22, 23)  # normal, anomalous x3 (negative stock), normal x3


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `train --detector default` for the module (consume only reads the store)."""
    root = tmp_path_factory.mktemp("episodes")
    items = root / "snapshot.jsonl"
    items.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in snapshot_docs()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")}
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "train", "--items", str(items), "--detector", "default"],
        cwd=REPO, env=env | {"PYTHONPATH": str(REPO), "STOCKWATCH_MODEL_DIR": str(root / "models")},
        capture_output=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return root / "models"


@pytest.fixture
def env(settings_factory: Any, topic_factory: Callable[..., str], unique_name: Callable[[str], str],
        mongo_db: Any, model_dir: Path) -> dict[str, str]:  # fmt: skip
    mongo_db["inventory"].insert_many([dict(d) for d in snapshot_docs()])
    settings_factory(
        input_topic=topic_factory("in"),
        dlq_topic=topic_factory("dlq"),
        feedback_topic=topic_factory("feedback"),
        group_id=unique_name("episodes"),
        model_dir=str(model_dir),
        http_port=str(free_port()),
        create_missing_topics="false",
        resolve_after="3",
        suppressions_refresh_s="0.5",
        commit_interval_ms="50",
        audit_anomalies="true",
    )
    return {k: v for k, v in os.environ.items() if k.startswith("STOCKWATCH_")}


@pytest.fixture
def consume(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(**overrides: str) -> subprocess.Popen[bytes]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")} | env | overrides
        log = (tmp_path / f"consume-{len(procs)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "consumer.cli", "consume"], cwd=REPO,
                                env=full | {"PYTHONPATH": str(REPO)}, stdout=log, stderr=log)  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def produce(env: dict[str, str], stocks: tuple[int, ...], start: int) -> None:
    """Partial updates of ITEM at input offsets start.. (a one-partition topic)."""
    producer = KafkaProducer(bootstrap_servers=env["STOCKWATCH_KAFKA_BOOTSTRAP"], acks="all")
    try:
        for k, stock in enumerate(stocks):
            value = orjson.dumps({"item_id": ITEM, "event_id": f"e{start + k}", "stock_quantity": stock})
            meta = producer.send(env["STOCKWATCH_INPUT_TOPIC"], key=ITEM.encode(), value=value).get(30)
            assert meta.offset == start + k
    finally:
        producer.close()


def committed(env: dict[str, str]) -> int:
    consumer = KafkaConsumer(bootstrap_servers=env["STOCKWATCH_KAFKA_BOOTSTRAP"],
                             group_id=env["STOCKWATCH_GROUP_ID"], enable_auto_commit=False)  # fmt: skip
    try:
        return consumer.committed(TopicPartition(env["STOCKWATCH_INPUT_TOPIC"], 0)) or 0
    finally:
        consumer.close()


def events(env: dict[str, str]) -> list[dict[str, Any]]:
    return [
        orjson.loads(r.value)
        for r in read_all(env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_ANOMALY_TOPIC"])
    ]


def metric(env: dict[str, str], name: str) -> float | None:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{env['STOCKWATCH_HTTP_PORT']}/metrics", timeout=5
        ) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{name} ")]
    return values[0] if values else None


def wait_for(
    what: str, check: Callable[[], Any], proc: subprocess.Popen[bytes], timeout: float = 180.0
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        assert proc.poll() is None, f"consume exited ({proc.returncode}) while waiting for {what}"
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def settle(env: dict[str, str], proc: subprocess.Popen[bytes], offsets: int) -> list[dict[str, Any]]:
    """The anomaly topic once every input up to ``offsets`` is committed."""
    wait_for(f"offset {offsets} committed", lambda: committed(env) >= offsets, proc)
    return events(env)


def check_episode(got: list[dict[str, Any]]) -> str:
    """Exactly one open and one resolved event of one episode, valid against their schemas."""
    assert [e["status"] for e in got] == ["open", "resolved"], got
    opened, resolved = got
    validate("anomaly-event", opened)
    validate("resolved-event", resolved)
    for e in got:
        validate("anomaly-topic-event", e)
    assert opened["episode_id"] == resolved["episode_id"] and opened["item_id"] == ITEM
    assert opened["source"]["offset"] == 1 and resolved["source"]["offset"] == 6
    assert resolved["occurrences"] == 3 and resolved["max_severity"] == opened["severity"]
    return str(opened["episode_id"])


def test_an_episode_is_one_open_and_one_resolved_event_and_notify_posts_both(
    env: dict[str, str], consume: Any, hook: Hook, unique_name: Callable[[str], str]
) -> None:
    proc = consume()
    produce(env, EPISODE, 0)
    episode = check_episode(settle(env, proc, len(EPISODE)))
    bootstrap, topic = env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_ANOMALY_TOPIC"]
    bridge = start_bridge(bootstrap, topic, unique_name("notify"), hook.url)
    try:
        notify_wait("both POSTs", lambda: len(hook.bodies) == 2)
    finally:
        stop_bridge(*bridge)
    for body in hook.bodies:
        validate("webhook-payload", body)
        assert body["episode_id"] == episode
    opened, resolved = hook.bodies
    assert opened["text"].startswith(f"[{opened['severity'].upper()}] OPEN {ITEM}: ")
    assert resolved["text"].startswith(f"[RESOLVED] {ITEM}: back to normal after 3 anomalous update(s)")


def test_every_update_mode_publishes_one_event_per_anomalous_update(
    env: dict[str, str], consume: Any
) -> None:
    proc = consume(STOCKWATCH_ALERT_MODE="every-update")
    produce(env, EPISODE, 0)
    got = settle(env, proc, len(EPISODE))
    assert [e["source"]["offset"] for e in got] == [1, 2, 3]
    for e in got:
        validate("anomaly-event", e)
        assert "episode_id" not in e and "status" not in e


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_kill_9_mid_episode_neither_reopens_it_nor_loses_its_resolution(
    env: dict[str, str], consume: Any, delivery: str
) -> None:
    proc = consume(STOCKWATCH_DELIVERY=delivery)
    produce(env, EPISODE[:3], 0)  # normal, anomalous x2: the episode is open
    first = settle(env, proc, 3)
    assert [e["status"] for e in first] == ["open"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    produce(env, EPISODE[3:], 3)  # anomalous, normal x3
    proc = consume(STOCKWATCH_DELIVERY=delivery)
    got = wait_for(
        "the resolved event", lambda: (e := events(env)) and e[-1].get("status") == "resolved" and e, proc
    )
    assert check_episode(got) == first[0]["episode_id"]
    assert settle(env, proc, len(EPISODE)) == got  # nothing after it


def test_a_false_positive_with_suppress_for_silences_the_next_episode(
    env: dict[str, str], consume: Any, capsys: Any
) -> None:
    from config import Settings
    from consumer.cli import main

    proc = consume()
    produce(env, EPISODE, 0)
    episode = check_episode(settle(env, proc, len(EPISODE)))
    assert metric(env, "stockwatch_suppressed_total") == 0
    with running_worker(Settings()):  # the env of this test (the fixture set it)
        assert main(["feedback", episode, "false_positive", "--suppress-for", "1h"]) == 0
        sent = validate("feedback-message", orjson.loads(capsys.readouterr().out))
        assert sent["episode_id"] == episode
        wait_for(
            "the suppression in consume", lambda: metric(env, "stockwatch_suppressions_active") == 1, proc
        )
    produce(env, EPISODE, len(EPISODE))  # the same anomaly again
    got = settle(env, proc, 2 * len(EPISODE))
    assert len(got) == 2, got  # no new episode: nothing published
    assert wait_for("the counter", lambda: metric(env, "stockwatch_suppressed_total") == 1, proc)
    assert main(["suppressions", "list", "--json"]) == 0
    [row] = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["item_id"] == ITEM and row["id"] == episode


def test_a_far_future_update_is_dead_lettered_and_the_items_next_normal_updates_resolve_its_episode(
    env: dict[str, str], consume: Any
) -> None:
    now = time.time()
    stamped = [(20, now), (-5, now + 1), (-6, now + 2), (-7, now + 3), (21, now + 10 * 365 * 86_400.0),
               (22, now + 5), (23, now + 6), (24, now + 7)]  # fmt: skip
    proc = consume()
    producer = KafkaProducer(bootstrap_servers=env["STOCKWATCH_KAFKA_BOOTSTRAP"], acks="all")
    try:
        for k, (stock, at) in enumerate(stamped):
            value = orjson.dumps(
                {"item_id": ITEM, "event_id": f"e{k}", "stock_quantity": stock, "occurred_at": at}
            )
            producer.send(env["STOCKWATCH_INPUT_TOPIC"], key=ITEM.encode(), value=value).get(30)
    finally:
        producer.close()
    got = settle(env, proc, len(stamped))
    assert [(e["status"], e["source"]["offset"]) for e in got] == [("open", 1), ("resolved", 7)], got
    assert got[1]["occurrences"] == 3  # the refused update neither counted nor reset the episode
    letters = read_all(env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_DLQ_TOPIC"])
    assert len(letters) == 1
    headers = {k: v.decode() for k, v in letters[0].headers}
    validate("dlq-headers", headers)
    assert headers["dlq.reason"] == "future_time" and headers["dlq.source.offset"] == "4"
    assert orjson.loads(letters[0].value)["event_id"] == "e4"
    assert metric(env, 'stockwatch_dlq_total{reason="future_time"}') == 1.0
