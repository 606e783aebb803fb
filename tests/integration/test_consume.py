"""`stockwatch consume` against the real broker (and Mongo for the audit): the issue's done-when list.

Every test gets fresh topics, a fresh group and its own model directory. The service runs either
in a thread through its API (``build_service(...).run(max_events=..., timeout=...)``) or, where a
process must die or get a signal, as ``python -m consumer.cli consume`` in a subprocess.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from config.settings import Settings
from consumer.cli import main as cli_main
from consumer.scoring.loop import ScoringService
from consumer.scoring.wiring import build_service
from consumer.wire.control import sign_message
from consumer.wire.events import anomaly_id
from detection import ModelStore, parse_item, train_model
from tests.integration.running import Running
from tests.schemas import dlq_headers, validate, validate_all

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLANTED_EVERY = 25  # every 25th update is a planted anomaly (4 %)


# ---------------------------------------------------------------------------- helpers


def make_item(i: int, rng: random.Random, *, planted: bool = False) -> dict[str, Any]:
    item = {
        "item_id": f"SKU-{i:05d}",
        "event_id": f"evt-{i}",
        "stock_quantity": rng.randint(30, 70),
        "min_stock_level": 10,
        "max_stock_level": 100,
        "price": round(rng.uniform(10, 40), 2),
    }
    if planted:
        item["stock_quantity"] = rng.choice([50_000, -500])
        item["price"] = 999.0
    return item


def updates(n: int, *, seed: int = 1, start: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed + start)
    return [make_item(i, rng, planted=i % PLANTED_EVERY == 0) for i in range(start, start + n)]


def publish_model(model_dir: Path, *, seed: int = 42, n: int = 400) -> str:
    rng = random.Random(seed)
    items = [parse_item(make_item(i, rng)) for i in range(n)]
    return ModelStore(model_dir).publish(train_model(items))


def produce(
    bootstrap: str,
    topic: str,
    values: list[bytes | dict[str, Any]],
    keys: list[bytes | None] | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for i, value in enumerate(values):
            raw = value if isinstance(value, bytes) else orjson.dumps(value)
            key = (
                keys[i]
                if keys is not None
                else (value["item_id"].encode() if isinstance(value, dict) else None)
            )
            producer.send(topic, key=key, value=raw, headers=headers)
        producer.flush()
    finally:
        producer.close()


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    expect: int | None = None,
    timeout: float = 15.0,
    committed_only: bool = False,
) -> list[Any]:
    """Every record of ``topic`` (stops once ``expect`` are read, or when idle after ``timeout``)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200)
            got = [r for recs in batch.values() for r in recs]
            out += got
            if got:
                idle_since = time.monotonic()
            if expect is not None and len(out) >= expect:
                # read a little longer to catch duplicates that should not be there
                if time.monotonic() - idle_since > 0.5:
                    break
            elif expect is None and time.monotonic() - idle_since > 1.5:
                break
        return out
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str, partition: int = 0) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, partition))  # type: ignore[no-any-return]
    finally:
        consumer.close()


def decided(bootstrap: str, topic: str, *, expect: int, committed_only: bool = False) -> set[tuple[int, int]]:
    """The (partition, offset) of every input the decisions topic holds a decision for."""
    records = read_topic(bootstrap, topic, expect=expect, committed_only=committed_only)
    return {
        (d["source"]["partition"], d["source"]["offset"]) for d in (orjson.loads(r.value) for r in records)
    }


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float = 60.0,
    every: float = 0.2,
    state: Callable[[], object] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    detail = f"; state: {state()!r}" if state is not None else ""
    pytest.fail(f"timed out after {timeout}s waiting for {what}{detail}")


def expected_anomalies(
    model_dir: Path, objs: list[dict[str, Any]], version: str | None = None
) -> dict[int, float]:
    """offset -> score of the inputs the model flags (input offsets = list positions)."""
    model = ModelStore(model_dir).load(version)
    decisions = model.decide([parse_item(o) for o in objs])
    return {i: float(decisions.scores[i]) for i in range(len(objs)) if decisions.is_anomaly[i]}


def events_in(service: ScoringService) -> float:
    return service.metrics.registry.get_sample_value("stockwatch_events_in_total") or 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["kafka-python", "confluent-kafka"])
def env(
    request: pytest.FixtureRequest,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> dict[str, str]:
    """STOCKWATCH_* for one test: fresh topics, group and model directory; each test runs with both
    transports of the hot path (kafka-python, the default, and the librdkafka one)."""
    return {
        "STOCKWATCH_KAFKA_CLIENT": request.param,
        "STOCKWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "STOCKWATCH_INPUT_TOPIC": topic_factory("in"),
        "STOCKWATCH_ANOMALY_TOPIC": topic_factory("anomalies"),
        "STOCKWATCH_DLQ_TOPIC": topic_factory("dlq"),
        "STOCKWATCH_STATUS_TOPIC": topic_factory("status"),
        "STOCKWATCH_GROUP_ID": unique_name("group"),
        "STOCKWATCH_MODEL_DIR": str(tmp_path / "models"),
        "STOCKWATCH_HTTP_PORT": "0",
        "STOCKWATCH_POLL_TIMEOUT_MS": "100",
        "STOCKWATCH_MODEL_POLL_INTERVAL_S": "0.3",
        # kafka-python 3.0 occasionally stalls in a rebalance until a session expires (commits are
        # refused meanwhile, then retried): a 10 s session keeps such a stall short in tests.
        "STOCKWATCH_SESSION_TIMEOUT_MS": "10000",
        "STOCKWATCH_CREATE_MISSING_TOPICS": "false",
    }


def settings_from(env: dict[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {k.removeprefix("STOCKWATCH_").lower(): v for k, v in env.items()}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def run_service() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(settings: Settings, **bounds: Any) -> Running:
        running = Running(build_service(settings), **bounds)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "consume", *args],
        cwd=REPO,
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def anomaly_events(env: dict[str, str], expect: int | None = None, **kw: Any) -> list[dict[str, Any]]:
    records = read_topic(
        env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_ANOMALY_TOPIC"], expect=expect, **kw
    )
    return [orjson.loads(r.value) for r in records]


# ---------------------------------------------------------------------------- 1. same as `stockwatch score`


def test_anomaly_events_equal_stockwatch_score(
    env: dict[str, str], run_service: Callable[..., Running], tmp_path: Path
) -> None:
    model_dir = Path(env["STOCKWATCH_MODEL_DIR"])
    version = publish_model(model_dir)
    objs = updates(400)
    produce(env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_INPUT_TOPIC"], objs)

    lines = tmp_path / "updates.jsonl"
    lines.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in objs))
    scored = tmp_path / "scored.jsonl"
    assert (
        cli_main(["score", "--model-dir", str(model_dir), "--input", str(lines), "--output", str(scored)])
        == 0
    )
    by_cli = validate_all("score-line", (orjson.loads(line) for line in scored.read_bytes().splitlines()))
    cli_anomalies = {d["item_id"]: d["score"] for d in by_cli if d["is_anomaly"]}
    assert sum(1 for i in range(400) if i % PLANTED_EVERY == 0) <= len(cli_anomalies)

    running = run_service(settings_from(env, max_poll_records=150), max_events=len(objs), timeout=60)
    transport = {"kafka-python": "KafkaSource", "confluent-kafka": "ConfluentSource"}
    assert type(running.service.source).__name__ == transport[env["STOCKWATCH_KAFKA_CLIENT"]]
    running.thread.join(60)
    stats = running.stop()
    assert stats.events_in == 400 and stats.scored == 400 and stats.batches >= 3

    events = validate_all("anomaly-event", anomaly_events(env, expect=len(cli_anomalies)))
    assert {e["item_id"]: e["score"] for e in events} == cli_anomalies  # same ids, bit-identical scores
    assert len(events) == len(cli_anomalies)  # one event per anomalous item, no duplicates
    # one builder: the event of `consume` is the line of `score` but for where it was read (and when)
    cli_by_item = {d["item_id"]: d for d in by_cli}
    where = {"anomaly_id", "source", "detected_at"}
    for e in events:
        assert {k: v for k, v in e.items() if k not in where} == {
            k: v for k, v in cli_by_item[e["item_id"]].items() if k not in where
        }
        source = e["source"]
        assert e["anomaly_id"] == anomaly_id(source["topic"], source["partition"], source["offset"], version)
        assert e["model_version"] == version
        assert e["source"]["topic"] == env["STOCKWATCH_INPUT_TOPIC"]
        assert e["event_id"] == f"evt-{e['source']['offset']}"
        assert e["item"]["item_id"] == e["item_id"]
    assert (
        committed(
            env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_GROUP_ID"], env["STOCKWATCH_INPUT_TOPIC"]
        )
        == 400
    )


# ---------------------------------------------------------------------------- 2. dead letters


def test_malformed_messages_go_to_the_dlq_and_neighbours_are_scored(
    env: dict[str, str], run_service: Callable[..., Running]
) -> None:
    model_dir = Path(env["STOCKWATCH_MODEL_DIR"])
    publish_model(model_dir)
    rng = random.Random(5)
    good = [make_item(i, rng, planted=i in (1, 9)) for i in range(10)]
    bad: list[tuple[bytes | None, bytes, str]] = [
        (b"K-json", b'{"item_id": "X", "stock_quantity": ', "invalid_json"),
        (b"K-array", b"[1, 2, 3]", "not_an_object"),
        (b"K-nan", b'{"item_id": "X1", "price": "NaN"}', "invalid_item"),
        (b"K-bool", b'{"item_id": "X2", "stock_quantity": true}', "invalid_item"),
        (b"K-str", b'{"item_id": "X3", "stock_quantity": "plenty"}', "invalid_item"),
        (b"K-noid", b'{"stock_quantity": 5, "price": 2}', "invalid_item"),
        (b"K-big", b'{"item_id": "X4", "note": "' + b"x" * 3000 + b'"}', "oversize"),
        (None, b"\xff\xfe not utf-8", "invalid_json"),
    ]
    values: list[bytes | dict[str, Any]] = []
    keys: list[bytes | None] = []
    for i, item in enumerate(good):  # good, bad, good, bad, ...: bad input between valid neighbours
        values.append(item)
        keys.append(item["item_id"].encode())
        if i < len(bad):
            values.append(bad[i][1])
            keys.append(bad[i][0])
    bootstrap, topic = env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_INPUT_TOPIC"]
    produce(bootstrap, topic, values, keys)

    running = run_service(settings_from(env, max_message_bytes=2048), max_events=len(values), timeout=60)
    running.thread.join(60)
    stats = running.stop()
    assert (stats.events_in, stats.scored, stats.dead_letters) == (18, 10, 8)

    dlq = read_topic(bootstrap, env["STOCKWATCH_DLQ_TOPIC"], expect=len(bad))
    assert len(dlq) == len(bad)
    offsets = {i: (values[i], keys[i]) for i in range(len(values))}
    for record, (key, value, reason) in zip(dlq, bad, strict=True):
        validate("dlq-headers", dlq_headers(record.headers))
        headers = dict(record.headers)
        assert (record.key, record.value) == (key, value)  # original bytes, original key
        assert headers["dlq.reason"].decode() == reason
        assert headers["dlq.error"]
        assert headers["dlq.source.topic"].decode() == topic
        assert headers["dlq.source.partition"] == b"0"
        source_offset = int(headers["dlq.source.offset"])
        assert offsets[source_offset] == (value, key)
        assert int(headers["dlq.source.timestamp"]) > 0
    reasons = Counter(dict(r.headers)["dlq.reason"].decode() for r in dlq)
    assert reasons == Counter(reason for _, _, reason in bad)

    flagged = {e["item_id"] for e in anomaly_events(env)}
    assert {"SKU-00001", "SKU-00009"} <= flagged  # planted neighbours of bad input are still scored
    assert committed(bootstrap, env["STOCKWATCH_GROUP_ID"], topic) == len(values)
    metrics = running.service.metrics.render().decode()
    assert 'stockwatch_dlq_total{reason="invalid_item"} 4.0' in metrics


def test_a_forged_dlq_header_cannot_pass_for_stockwatchs(
    env: dict[str, str], run_service: Callable[..., Running]
) -> None:
    """A producer plants dlq.reason/dlq.service: the dead letter carries StockWatch's first, the
    planted ones renamed original.dlq.*, so first- and last-occurrence readers read the truth."""
    publish_model(Path(env["STOCKWATCH_MODEL_DIR"]))
    bootstrap, topic = env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_INPUT_TOPIC"]
    planted = [("dlq.reason", b"oversize"), ("dlq.service", b"someone-else"), ("traceparent", b"00-ab")]
    produce(bootstrap, topic, [b"{not json"], [b"K-forged"], headers=planted)
    before = datetime.now(UTC)

    running = run_service(settings_from(env), max_events=1, timeout=60)
    running.thread.join(60)
    assert running.stop().dead_letters == 1

    [record] = read_topic(bootstrap, env["STOCKWATCH_DLQ_TOPIC"], expect=1)
    validate("dlq-headers", dlq_headers(record.headers))
    names = [k for k, _ in record.headers]
    assert names[0] == "dlq.reason" and names.count("dlq.reason") == 1
    first: dict[str, bytes] = {}
    for k, v in record.headers:
        first.setdefault(k, v)
    for reader in (first, dict(record.headers)):
        assert reader["dlq.reason"] == b"invalid_json"
        assert reader["dlq.service"] == b"stockwatch-consume"
        assert reader["dlq.group"] == env["STOCKWATCH_GROUP_ID"].encode()
        assert reader["original.dlq.reason"] == b"oversize"
        assert reader["original.dlq.service"] == b"someone-else"
        assert reader["traceparent"] == b"00-ab"
    at = datetime.fromisoformat(first["dlq.dead_lettered_at"].decode())
    assert at.tzinfo is not None and at >= before.replace(microsecond=0) - timedelta(seconds=1)


# ---------------------------------------------------------------------------- 3. SIGKILL and restart


def _kill_and_restart(
    env: dict[str, str], processes: list[subprocess.Popen[bytes]], n: int
) -> list[dict[str, Any]]:
    """Produce n updates in two halves; SIGKILL the consumer mid-stream, restart, let it drain."""
    # The killed member's partitions return to the group after its session times out: keep it short.
    env = env | {"STOCKWATCH_SESSION_TIMEOUT_MS": "6000"}
    bootstrap, topic = env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_INPUT_TOPIC"]
    objs = updates(n)
    produce(bootstrap, topic, objs[: n // 2])
    first = spawn(env)
    processes.append(first)

    def some_anomalies_out() -> bool:
        return bool(read_topic(bootstrap, env["STOCKWATCH_ANOMALY_TOPIC"], expect=1, timeout=0.5))

    wait_for("the first anomalies", some_anomalies_out, timeout=60, every=0.05)

    def feed_slowly() -> None:  # keep the stream flowing (~1.5 s) while the process dies
        rest = objs[n // 2 :]
        for start in range(0, len(rest), 60):
            produce(bootstrap, topic, rest[start : start + 60])
            time.sleep(0.15)

    feeder = threading.Thread(target=feed_slowly)
    feeder.start()
    time.sleep(0.4)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    feeder.join(30)
    group = env["STOCKWATCH_GROUP_ID"]
    at_kill = committed(bootstrap, group, topic) or 0
    assert at_kill < n, "the consumer must die with work left (mid-stream)"

    second = spawn(env)
    processes.append(second)
    wait_for(
        "the restarted consumer to commit everything",
        lambda: committed(bootstrap, group, topic) == n,
        timeout=90,
        every=0.5,
    )
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    return objs


def test_sigkill_mid_stream_loses_nothing_at_least_once(
    env: dict[str, str], processes: list[subprocess.Popen[bytes]]
) -> None:
    model_dir = Path(env["STOCKWATCH_MODEL_DIR"])
    publish_model(model_dir)
    env = env | {"STOCKWATCH_MAX_POLL_RECORDS": "40"}
    objs = _kill_and_restart(env, processes, 1200)
    want = expected_anomalies(model_dir, objs)
    events = anomaly_events(env, expect=len(want))
    seen = Counter(e["source"]["offset"] for e in events)
    assert set(seen) == set(want)  # every anomalous input at least once, nothing else
    for e in events:
        assert e["score"] == want[e["source"]["offset"]]
    # duplicates (if any) are recognisable: same anomaly_id for the same offset and model
    ids_per_offset = {off: {e["anomaly_id"] for e in events if e["source"]["offset"] == off} for off in seen}
    assert all(len(ids) == 1 for ids in ids_per_offset.values())


def test_sigkill_mid_stream_exactly_once(
    env: dict[str, str], processes: list[subprocess.Popen[bytes]], unique_name: Callable[[str], str]
) -> None:
    model_dir = Path(env["STOCKWATCH_MODEL_DIR"])
    publish_model(model_dir)
    env = env | {
        "STOCKWATCH_MAX_POLL_RECORDS": "40",
        "STOCKWATCH_DELIVERY": "exactly-once",
        "STOCKWATCH_TRANSACTIONAL_ID": unique_name("tx"),
    }
    objs = _kill_and_restart(env, processes, 1200)
    want = expected_anomalies(model_dir, objs)
    records = read_topic(
        env["STOCKWATCH_KAFKA_BOOTSTRAP"],
        env["STOCKWATCH_ANOMALY_TOPIC"],
        expect=len(want),
        committed_only=True,
    )
    seen = Counter(orjson.loads(r.value)["source"]["offset"] for r in records)
    assert set(seen) == set(want)
    assert max(seen.values()) == 1, "a read_committed reader must see every anomaly exactly once"


def test_timeout_is_honoured_while_a_join_waits_for_a_dead_members_session(
    env: dict[str, str], processes: list[subprocess.Popen[bytes]]
) -> None:
    """A member killed -9 stays in the group until its session expires, and the coordinator holds a
    restarted member's JoinGroup until then: `--timeout` stops the restarted one long before (its
    LeaveGroup, queued behind that JoinGroup, used to wait for it: ~30 s past a 5 s --timeout)."""
    session_s = 40
    env = env | {"STOCKWATCH_SESSION_TIMEOUT_MS": str(session_s * 1000)}
    publish_model(Path(env["STOCKWATCH_MODEL_DIR"]))
    bootstrap, topic, group = (
        env["STOCKWATCH_KAFKA_BOOTSTRAP"],
        env["STOCKWATCH_INPUT_TOPIC"],
        env["STOCKWATCH_GROUP_ID"],
    )
    produce(bootstrap, topic, updates(20))
    first = spawn(env)
    processes.append(first)
    wait_for("the first member to commit", lambda: committed(bootstrap, group, topic) == 20, timeout=90)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = time.monotonic()
    second = spawn(env, "--timeout", "3")
    processes.append(second)
    try:
        status = second.wait(session_s - 5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"--timeout 3 not honoured: still running {time.monotonic() - killed_at:.0f} s later")
    assert status == 0, second.stderr.read().decode() if second.stderr else status


# ---------------------------------------------------------------------------- 4. hot swap and refusal


def _tampered_publish(model_dir: Path, staging: Path) -> str:
    """Publish a model whose file was altered after signing/checksumming, then point CURRENT at it."""
    version = publish_model(staging, seed=99)
    model_file = staging / version / "model.joblib"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    shutil.copytree(staging / version, model_dir / version)
    tmp = model_dir / ".CURRENT.tmp-test"
    tmp.write_text(version + "\n")
    os.replace(tmp, model_dir / "CURRENT")
    return version


def test_new_model_swaps_mid_stream_and_a_tampered_one_is_refused(
    env: dict[str, str],
    run_service: Callable[..., Running],
    tmp_path: Path,
    unique_name: Callable[[str], str],
    topic_factory: Callable[..., str],
) -> None:
    model_dir = Path(env["STOCKWATCH_MODEL_DIR"])
    bootstrap, topic = env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_INPUT_TOPIC"]
    v1 = publish_model(model_dir, seed=1)
    # A long store-poll interval: only the status-topic announcement can make the swap quick.
    key = "announce-control-key-0123456789abcdef"
    settings = settings_from(
        env, decisions_topic=topic_factory("decisions"), model_poll_interval_s=60.0, control_key=key
    )
    running = run_service(settings, timeout=90)
    service = running.service

    def announce(version: str) -> None:  # signed as the retrain worker signs: unsigned ones are ignored
        signed = sign_message({"type": "model_published", "version": version}, key.encode())
        produce(bootstrap, env["STOCKWATCH_STATUS_TOPIC"], [orjson.dumps(signed)], [None])

    chunk = 150
    produce(bootstrap, topic, updates(chunk, start=0))
    wait_for("chunk 1", lambda: events_in(service) >= chunk)
    v2 = publish_model(model_dir, seed=2)
    announce(v2)
    wait_for("the swap to v2", lambda: service.health.model_version == v2, timeout=15)
    produce(bootstrap, topic, updates(chunk, start=chunk))
    wait_for("chunk 2", lambda: events_in(service) >= 2 * chunk)
    v3 = _tampered_publish(model_dir, tmp_path / "staging")
    announce(v3)
    wait_for(
        "the refusal",
        lambda: (
            (
                service.metrics.registry.get_sample_value(
                    "stockwatch_model_refusals_total", {"reason": "verification"}
                )
                or 0
            )
            == 1
        ),
        timeout=15,
    )
    produce(bootstrap, topic, updates(chunk, start=2 * chunk))
    wait_for("chunk 3", lambda: events_in(service) >= 3 * chunk)
    running.stop()

    decisions = validate_all(
        "decision-event",
        (
            orjson.loads(r.value)
            for r in read_topic(bootstrap, settings.decisions_topic or "", expect=3 * chunk)
        ),
    )
    by_offset = {d["source"]["offset"]: d["model_version"] for d in decisions}
    assert sorted(by_offset) == list(range(3 * chunk)) and len(decisions) == 3 * chunk  # no gap, no duplicate
    assert {by_offset[o] for o in range(chunk)} == {v1}
    assert {by_offset[o] for o in range(chunk, 3 * chunk)} == {v2}  # v3 refused: v2 keeps serving
    assert v1 != v2
    metrics = service.metrics.render().decode()
    assert f'stockwatch_model_info{{version="{v2}"}} 1.0' in metrics
    assert 'stockwatch_model_refusals_total{reason="verification"} 1.0' in metrics
    assert v3 in service.watcher.refused


# ---------------------------------------------------------------------------- 5. no model yet


def test_without_a_model_nothing_is_committed_and_nothing_lost(
    env: dict[str, str], run_service: Callable[..., Running], topic_factory: Callable[..., str]
) -> None:
    model_dir = Path(env["STOCKWATCH_MODEL_DIR"])
    bootstrap, topic, group = (
        env["STOCKWATCH_KAFKA_BOOTSTRAP"],
        env["STOCKWATCH_INPUT_TOPIC"],
        env["STOCKWATCH_GROUP_ID"],
    )
    objs = updates(200)
    produce(bootstrap, topic, objs)
    settings = settings_from(env, decisions_topic=topic_factory("decisions"))
    running = run_service(settings, timeout=90)
    service = running.service
    wait_for("partitions assigned", lambda: service.health.assigned == 1, state=lambda: service.health)
    time.sleep(1.5)  # it polls, pauses and waits
    assert service.health.waiting_for_model
    ready, body = service.health.readyz()
    assert not ready and "waiting for a model" in body["missing"]
    assert "stockwatch_waiting_for_model 1.0" in service.metrics.render().decode()
    assert committed(bootstrap, group, topic) is None
    assert events_in(service) == 0

    version = publish_model(model_dir)
    wait_for(
        "everything scored",
        lambda: committed(bootstrap, group, topic) == len(objs),
        state=lambda: (committed(bootstrap, group, topic), service.health, service.metrics.render().decode()),
    )
    assert service.health.readyz()[0]
    assert not service.health.waiting_for_model
    running.stop()
    decisions = read_topic(bootstrap, settings.decisions_topic or "", expect=len(objs))
    assert sorted(orjson.loads(r.value)["source"]["offset"] for r in decisions) == list(range(len(objs)))
    want = expected_anomalies(model_dir, objs, version)
    assert {e["source"]["offset"] for e in anomaly_events(env, expect=len(want))} == set(want)


# ---------------------------------------------------------------------------- 6. SIGTERM + HTTP


def test_sigterm_finishes_commits_and_exits_zero(
    env: dict[str, str], processes: list[subprocess.Popen[bytes]], topic_factory: Callable[..., str]
) -> None:
    model_dir = Path(env["STOCKWATCH_MODEL_DIR"])
    publish_model(model_dir)
    bootstrap, topic, group = (
        env["STOCKWATCH_KAFKA_BOOTSTRAP"],
        env["STOCKWATCH_INPUT_TOPIC"],
        env["STOCKWATCH_GROUP_ID"],
    )
    port = free_port()
    decisions_topic = topic_factory("decisions")
    env = env | {
        "STOCKWATCH_HTTP_PORT": str(port),
        "STOCKWATCH_HTTP_HOST": "127.0.0.1",
        "STOCKWATCH_DECISIONS_TOPIC": decisions_topic,
        "STOCKWATCH_MAX_POLL_RECORDS": "50",
    }
    objs = updates(600)
    produce(bootstrap, topic, objs[:300])
    proc = spawn(env)
    processes.append(proc)

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    wait_for("/readyz", lambda: get("/readyz")[0] == 200, timeout=60)
    assert get("/healthz")[0] == 200
    feeder = threading.Thread(target=produce, args=(bootstrap, topic, objs[300:]))
    feeder.start()
    wait_for(
        "some progress",
        lambda: (
            b"stockwatch_events_in_total" in get("/metrics")[1]
            and (committed(bootstrap, group, topic) or 0) > 0
        ),
    )
    status, metrics = get("/metrics")
    assert (
        status == 200
        and b"stockwatch_consumer_lag_records" in metrics
        and b"stockwatch_batch_duration_seconds_bucket" in metrics
        and b"stockwatch_model_age_seconds" in metrics
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    feeder.join(30)
    done = committed(bootstrap, group, topic)
    assert done is not None and done > 0
    decisions = validate_all(
        "decision-event", (orjson.loads(r.value) for r in read_topic(bootstrap, decisions_topic, expect=done))
    )
    # everything published was committed and everything committed was published, once
    assert sorted(d["source"]["offset"] for d in decisions) == list(range(done))


# ---------------------------------------------------------------------------- optional Mongo audit


def test_audit_writes_anomalies_to_mongo_idempotently(
    env: dict[str, str],
    run_service: Callable[..., Running],
    mongo_uri: str,
    mongo_db: Any,
    unique_name: Callable[[str], str],
) -> None:
    model_dir = Path(env["STOCKWATCH_MODEL_DIR"])
    publish_model(model_dir)
    objs = updates(150)
    produce(env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_INPUT_TOPIC"], objs)
    settings = settings_from(env, audit_anomalies=True, mongo_uri=mongo_uri, mongo_db=mongo_db.name)
    first = run_service(settings, max_events=len(objs), timeout=60)
    first.thread.join(60)
    stats = first.stop()
    docs = list(mongo_db["anomalies"].find())
    assert len(docs) == stats.anomalies > 0
    assert all(d["_id"] == d["anomaly_id"] for d in docs)
    validate_all("anomaly-event", ({k: v for k, v in d.items() if k != "_id"} for d in docs))
    # a redelivery (here: a second group re-reading the topic) rewrites the same documents
    again = run_service(
        settings.model_copy(update={"group_id": unique_name("group")}), max_events=len(objs), timeout=60
    )
    again.thread.join(60)
    again.stop()
    assert mongo_db["anomalies"].count_documents({}) == len(docs)


# ---------------------------------------------------------------------------- a group of two


def test_two_instances_split_three_partitions_and_lose_nothing(
    env: dict[str, str],
    run_service: Callable[..., Running],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    model_dir = Path(env["STOCKWATCH_MODEL_DIR"])
    publish_model(model_dir)
    bootstrap = env["STOCKWATCH_KAFKA_BOOTSTRAP"]
    topic = topic_factory("in3", partitions=3)
    env = env | {"STOCKWATCH_INPUT_TOPIC": topic}
    objs = updates(600)
    produce(bootstrap, topic, objs)  # keyed by item id: spread over the 3 partitions
    settings = settings_from(env, max_poll_records=60)
    first = run_service(settings, timeout=90)
    second = run_service(settings, timeout=90)
    group = env["STOCKWATCH_GROUP_ID"]

    def all_committed() -> bool:
        return sum(committed(bootstrap, group, topic, p) or 0 for p in range(3)) == len(objs)

    wait_for("all three partitions committed", all_committed, timeout=60)
    a, b = first.stop(), second.stop()
    assert a.events_in + b.events_in >= len(objs)  # a rebalance may hand a batch to both (at-least-once)
    lines = tmp_path / "u.jsonl"
    lines.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in objs))
    scored = tmp_path / "s.jsonl"
    assert (
        cli_main(["score", "--model-dir", str(model_dir), "--input", str(lines), "--output", str(scored)])
        == 0
    )
    want = {
        d["item_id"]: d["score"]
        for d in map(orjson.loads, scored.read_bytes().splitlines())
        if d["is_anomaly"]
    }
    got = anomaly_events(env, expect=len(want))
    assert {e["item_id"]: e["score"] for e in got} == want
    assert {e["source"]["partition"] for e in got} == {0, 1, 2}
