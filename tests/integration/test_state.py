"""The per-item state of `stockwatch consume` on the real broker and FerretDB (issue 11 point 3).

The consumer runs as `stockwatch consume` (a subprocess of the CLI) serving a ``default`` detector
published to its model directory. Every check compares with an offline replay: one
``detector.decide_batch`` over the same stream, seeded from the same snapshot (what `stockwatch
score --baseline S --input E` runs: tests/integration/test_serve_default.py compares consume with
the CLI itself). The final per-item state is read back from the changelog topic, so an update
applied twice (or lost) shows in its counters.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from consumer.scoring.state.changelog import changelog_topic, decode
from consumer.scoring.state.record import states_of
from consumer.scoring.state.table import PartitionTable
from detection import ChangeDetector, ModelStore, parse_updates, train_detector
from tests.fakes import Rec
from tests.unit.consumer.scoring.state.stream import offline, snapshot_docs, stream

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 2


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs())[0])


@pytest.fixture
def env(kafka_bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str],
        mongo_db: Any, mongo_uri: str, detector: ChangeDetector, tmp_path: Path) -> Iterator[dict[str, str]]:  # fmt: skip
    mongo_db["inventory"].insert_many([dict(d) for d in snapshot_docs()])
    ModelStore(tmp_path / "models").publish(detector)  # served from arrays: the same decisions
    group = unique_name("state")
    env = {
        "STOCKWATCH_MODEL_DIR": str(tmp_path / "models"),
        "STOCKWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "STOCKWATCH_MONGO_URI": mongo_uri,
        "STOCKWATCH_MONGO_DB": mongo_db.name,
        "STOCKWATCH_INPUT_TOPIC": topic_factory("in", partitions=PARTITIONS),
        "STOCKWATCH_ANOMALY_TOPIC": topic_factory("anomalies"),
        "STOCKWATCH_DLQ_TOPIC": topic_factory("dlq"),
        "STOCKWATCH_STATUS_TOPIC": topic_factory("status"),
        "STOCKWATCH_GROUP_ID": group,
        "STOCKWATCH_HTTP_PORT": "0",
        "STOCKWATCH_MAX_POLL_RECORDS": "60",
        "STOCKWATCH_SESSION_TIMEOUT_MS": "6000",
        "STOCKWATCH_CREATE_MISSING_TOPICS": "false",
        "STOCKWATCH_STATE_SEED": "snapshot",
        "STOCKWATCH_ALERT_MODE": "every-update",  # one event per anomalous update: compared with offline
    }
    yield env
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.delete_topics([state_topic(env)])
    except Exception:  # a leftover test topic is harmless
        pass
    finally:
        admin.close()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def state_topic(env: dict[str, str]) -> str:
    return changelog_topic("{group_id}.{input_topic}.state", group_id=env["STOCKWATCH_GROUP_ID"],
                           input_topic=env["STOCKWATCH_INPUT_TOPIC"])  # fmt: skip


def spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")} | env
    return subprocess.Popen([sys.executable, "-m", "consumer.cli", "consume"], cwd=REPO,
                            env=full | {"PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"))  # fmt: skip


def produce(bootstrap: str, topic: str, records: list[Rec]) -> None:
    """Each record to its partition; offsets on a fresh topic are the records' own."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    try:
        futures = [
            (r, producer.send(topic, key=r.key, value=r.value, partition=r.partition)) for r in records
        ]
        producer.flush()
        for r, future in futures:
            assert future.get(timeout=30).offset == r.offset
    finally:
        producer.close()


def committed(env: dict[str, str]) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=env["STOCKWATCH_KAFKA_BOOTSTRAP"],
                             group_id=env["STOCKWATCH_GROUP_ID"], enable_auto_commit=False)  # fmt: skip
    try:
        topic = env["STOCKWATCH_INPUT_TOPIC"]
        return {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)}
    finally:
        consumer.close()


def members_with_partitions(env: dict[str, str]) -> int:
    admin = KafkaAdminClient(bootstrap_servers=env["STOCKWATCH_KAFKA_BOOTSTRAP"])
    try:
        group = admin.describe_groups([env["STOCKWATCH_GROUP_ID"]])[env["STOCKWATCH_GROUP_ID"]]
        if group.get("group_state") != "Stable":
            return 0
        owned = [m["member_assignment"].get("assigned_partitions") for m in group.get("members", [])]
        return sum(1 for parts in owned if parts and any(t["partitions"] for t in parts))
    finally:
        admin.close()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every committed record (an aborted transaction's outputs are not part of the stream)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed")  # fmt: skip
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend(recs)
        return out
    finally:
        consumer.close()


def check_against_offline(env: dict[str, str], detector: ChangeDetector, recs: dict[Any, list[Rec]]) -> None:
    """Anomalies, missing_field dead letters and the final per-item state equal the offline replay."""
    decisions, table, rows = offline(detector, recs)
    bootstrap = env["STOCKWATCH_KAFKA_BOOTSTRAP"]
    flagged: dict[tuple[int, int], float] = {}
    events = read_all(bootstrap, env["STOCKWATCH_ANOMALY_TOPIC"])
    for r in events:
        event = orjson.loads(r.value)
        where = (event["source"]["partition"], event["source"]["offset"])
        assert flagged.setdefault(where, event["score"]) == event["score"]  # a redelivered copy agrees
        assert event["kind"] in {"model", "data_quality"} and 0 <= event["severity_score"] <= 100
    want = {
        (rows[i].partition, rows[i].offset): float(decisions.scores[i]) for i in decisions.anomaly_indices
    }
    assert len(want) >= 5
    assert flagged == pytest.approx(want)
    if env.get("STOCKWATCH_DELIVERY") == "exactly-once":  # a read_committed reader sees each decision once
        assert len(events) == len(flagged)
    missing = {(int(dict(r.headers)["dlq.source.partition"]), int(dict(r.headers)["dlq.source.offset"]))
               for r in read_all(bootstrap, env["STOCKWATCH_DLQ_TOPIC"])}  # fmt: skip
    assert missing == {(rows[i].partition, rows[i].offset) for i in decisions.rejected}
    logged = read_all(bootstrap, state_topic(env))
    for p in range(PARTITIONS):
        part = [r for r in logged if r.partition == p]
        restored = decode([r.key for r in part], [r.value for r in part], committed=2**62)
        got = PartitionTable()
        got.load(restored.item_ids, restored.records, restored.offsets)
        ids = sorted(set(restored.item_ids))
        assert ids and {int(i.split("-")[1]) % PARTITIONS for i in ids} == {p}
        records, _ = got.get(got.lookup(ids))
        assert states_of(records).tobytes() == table.gather(table.lookup(ids)).tobytes()  # counters included
    touched = {rows[i].key.decode() for i in range(len(rows)) if i not in decisions.rejected}
    held = decode([r.key for r in logged], [r.value for r in logged], committed=2**62).item_ids
    assert touched <= set(held)


def by_partition(recs: dict[Any, list[Rec]], cut: float) -> tuple[list[Rec], list[Rec]]:
    first = [r for tp in sorted(recs) for r in recs[tp][: int(len(recs[tp]) * cut)]]
    rest = [r for tp in sorted(recs) for r in recs[tp][int(len(recs[tp]) * cut) :]]
    return first, rest


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_sigkill_mid_stream_and_restart_lose_no_history_and_apply_nothing_twice(
    delivery: str,
    env: dict[str, str],
    detector: ChangeDetector,
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    env = env | {"STOCKWATCH_DELIVERY": delivery}
    recs = stream(n=1200, partitions=PARTITIONS, seed=11)
    total = {p: len(recs[("in", p)]) for p in range(PARTITIONS)}
    recs = {(env["STOCKWATCH_INPUT_TOPIC"], p): [r._replace(topic=env["STOCKWATCH_INPUT_TOPIC"]) for r in v]
            for (_, p), v in recs.items()}  # fmt: skip
    bootstrap, topic = env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_INPUT_TOPIC"]
    head, tail = by_partition(recs, 0.4)
    produce(bootstrap, topic, head)
    first = spawn(env, tmp_path / "first.log")
    processes.append(first)
    wait_for("the first commits", lambda: sum(committed(env).values()) > 0)

    def feed_slowly() -> None:  # the stream keeps flowing while the process dies
        for i in range(0, len(tail), 50):
            produce(bootstrap, topic, tail[i : i + 50])
            time.sleep(0.1)

    feeder = threading.Thread(target=feed_slowly)
    feeder.start()
    time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    feeder.join(60)
    assert committed(env) != total, "the consumer must die with work left (mid-stream)"
    second = spawn(env, tmp_path / "second.log")
    processes.append(second)
    wait_for("the restarted consumer to commit everything", lambda: committed(env) == total, timeout=180)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    assert b"restored the state of partition" in (tmp_path / "second.log").read_bytes()
    check_against_offline(env, detector, recs)


def test_a_member_that_leaves_hands_its_partitions_over_with_their_state(
    env: dict[str, str], detector: ChangeDetector, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    recs = stream(n=1200, partitions=PARTITIONS, seed=12)
    total = {p: len(recs[("in", p)]) for p in range(PARTITIONS)}
    recs = {(env["STOCKWATCH_INPUT_TOPIC"], p): [r._replace(topic=env["STOCKWATCH_INPUT_TOPIC"]) for r in v]
            for (_, p), v in recs.items()}  # fmt: skip
    bootstrap, topic = env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_INPUT_TOPIC"]
    head, tail = by_partition(recs, 0.5)
    a = spawn(env, tmp_path / "a.log")
    b = spawn(env, tmp_path / "b.log")
    processes += [a, b]
    wait_for("both members to own a partition", lambda: members_with_partitions(env) == 2)
    produce(bootstrap, topic, head)
    half = {p: len(recs[(topic, p)]) // 2 for p in range(PARTITIONS)}
    wait_for("both members to commit the first half", lambda: committed(env) == half, timeout=180)
    logs = [(tmp_path / n).read_bytes() for n in ("a.log", "b.log")]
    assert all(b"restored the state of partition" in log for log in logs), "each member owned a partition"
    b.send_signal(signal.SIGTERM)  # b leaves the group; a takes its partition over
    assert b.wait(30) == 0
    produce(bootstrap, topic, tail)
    wait_for("the remaining member to commit everything", lambda: committed(env) == total, timeout=180)
    a.send_signal(signal.SIGTERM)
    assert a.wait(30) == 0
    assert (tmp_path / "a.log").read_bytes().count(b"restored the state of partition") >= 2
    check_against_offline(env, detector, recs)


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_both_changelog_readers_read_to_the_end_and_skip_aborted_transactions(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    from config import Settings
    from consumer.adapters.confluent.changelog import ConfluentChangelog
    from consumer.adapters.kafka import KafkaChangelog, ensure_changelog
    from consumer.scoring.state.changelog import changelog_records
    from detection.item_state import STATE_DTYPE

    settings = Settings(kafka_bootstrap=kafka_bootstrap, input_topic=topic_factory("in", partitions=2),
                        group_id=unique_name("cl"))  # fmt: skip
    topic = unique_name("test-changelog")
    assert ensure_changelog(kafka_bootstrap, topic, input_topic=settings.input_topic) == 2
    records = np.zeros(3, STATE_DTYPE)
    records["stock"] = [1.0, 2.0, 3.0]
    committed = changelog_records(topic, 1, ["a", "b", "c"], records, [0, 1, 2])
    aborted = changelog_records(topic, 1, ["a"], records[2:], [3])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=unique_name("tx"))
    try:
        producer.init_transactions()
        for outputs, commit in ((committed, True), (aborted, False)):
            producer.begin_transaction()
            for o in outputs:
                producer.send(o.topic, key=o.key, value=o.value, partition=o.partition)
            producer.flush()
            if commit:
                producer.commit_transaction()
            else:
                producer.abort_transaction()
    finally:
        producer.close()
    reader = (KafkaChangelog if client == "kafka-python" else ConfluentChangelog)(settings.kafka, topic)
    try:
        keys, values = reader.read(1)
        assert reader.read(0) == ([], [])
    finally:
        reader.close()
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        admin.delete_topics([topic])
        admin.close()
    assert keys == [o.key for o in committed] and values == [o.value for o in committed]
    assert decode(keys, values, committed=10).item_ids == ["a", "b", "c"]


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_both_changelog_readers_read_a_partition_whose_first_records_are_deleted(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    """DeleteRecords (the rolling truncation, an operator, a retention) moves the first offset up:
    a reader starting at 0 must neither hang nor miss what is left (attack review: librdkafka's
    reader waited 300 s on a partition emptied that way, again at every restore)."""
    from config import Settings
    from consumer.adapters.confluent.changelog import ConfluentChangelog
    from consumer.adapters.kafka import KafkaChangelog, ensure_changelog

    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, input_topic=topic_factory("in"), group_id=unique_name("cl")
    )
    topic = unique_name("test-changelog")
    assert ensure_changelog(settings.kafka, topic, input_topic=settings.input_topic) == 1
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    reader = (KafkaChangelog if client == "kafka-python" else ConfluentChangelog)(settings.kafka, topic)
    try:
        for k in range(5):
            producer.send(topic, key=f"k{k}".encode(), value=f"v{k}".encode(), partition=0)
        producer.flush()
        assert reader.read(0) == ([f"k{k}".encode() for k in range(5)], [f"v{k}".encode() for k in range(5)])
        for k in range(5, 10):
            producer.send(topic, key=f"k{k}".encode(), value=f"v{k}".encode(), partition=0)
        producer.flush()
        assert reader.truncate(0, 8)
        started = time.monotonic()
        # the same reader again (a rebalance or a rewind gives the partition back to this process):
        # librdkafka went on from where it had been, out of range now, and reset to the end
        assert reader.read(0) == ([b"k8", b"k9"], [b"v8", b"v9"])
        assert reader.truncate(0, 10)  # every record deleted: first offset = end offset
        assert reader.read(0) == ([], [])
        assert time.monotonic() - started < 60  # not the reader's 300 s no-progress limit
    finally:
        reader.close()
        producer.close()
        admin.delete_topics([topic])
        admin.close()


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_partitions_added_to_the_input_while_running_get_changelog_partitions(
    client: str, kafka_bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    """`kafka-topics --alter --partitions` on the input of a running service (attack review: the
    restore of a new partition failed with an unknown changelog partition at every retry, stalling
    every partition for ever; a restart refused to start until the changelog was deleted)."""
    from kafka.admin import NewPartitions

    from config import Settings
    from consumer.adapters.kafka import KafkaChangelog
    from consumer.ports import KafkaUnavailableError
    from consumer.scoring.wiring import _changelog

    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, input_topic=topic_factory("in"), group_id=unique_name("cl")
    )
    topic = unique_name("test-changelog")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    reader = (
        KafkaChangelog(settings.kafka, topic)
        if client == "kafka-python"
        else _changelog(settings.kafka, topic)
    )
    try:
        assert reader.read(0) == ([], [])  # creates the changelog with the input's one partition
        admin.create_partitions({settings.input_topic: NewPartitions(3)})
        deadline = time.monotonic() + 30
        while True:  # as the loop does: a new partition's leader may not be known at once
            try:
                assert reader.read(2) == ([], [])
                break
            except KafkaUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        assert len(admin.describe_topics([topic])[0]["partitions"]) == 3
    finally:
        reader.close()
        admin.delete_topics([topic])
        admin.close()


def test_the_librdkafka_changelog_reader_leaves_no_threads_once_closed(
    kafka_bootstrap: str, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    """A service builds one per run; its restore reader and its truncation's admin client each run
    librdkafka threads, which outlived close() (a process building several services kept them all)."""
    from config import Settings
    from consumer.adapters.confluent.changelog import ConfluentChangelog
    from consumer.adapters.kafka import ensure_changelog

    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, input_topic=topic_factory("in"), group_id=unique_name("cl")
    )
    topic = unique_name("test-changelog")
    ensure_changelog(settings.kafka, topic, input_topic=settings.input_topic)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        producer.send(topic, key=b"k", value=b"v", partition=0)
        producer.flush()
        before = len(os.listdir("/proc/self/task"))
        reader = ConfluentChangelog(settings.kafka, topic)
        assert reader.read(0) == ([b"k"], [b"v"])
        assert reader.end_offset(0) == 1  # the admin client's threads start too
        assert len(os.listdir("/proc/self/task")) > before
        reader.close()  # the service's state store still holds its reader
        gc.collect()
        assert len(os.listdir("/proc/self/task")) <= before
    finally:
        producer.close()
        admin.delete_topics([topic])
        admin.close()


def log_start(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's first offset still held (DeleteRecords moves it up)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: o for tp, o in consumer.beginning_offsets(tps).items()}
    finally:
        consumer.close()


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_the_changelog_is_truncated_after_a_full_cycle_and_a_restore_after_it_gives_the_same_state(
    delivery: str,
    env: dict[str, str],
    detector: ChangeDetector,
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """The tables (~170 items per partition) are smaller than one rewrite slice: each write of a
    partition completes a cycle, so the log is truncated as soon as the group has committed."""
    env = env | {"STOCKWATCH_DELIVERY": delivery}
    recs = stream(n=1500, partitions=PARTITIONS, seed=21)
    recs = {(env["STOCKWATCH_INPUT_TOPIC"], p): [r._replace(topic=env["STOCKWATCH_INPUT_TOPIC"]) for r in v]
            for (_, p), v in recs.items()}  # fmt: skip
    bootstrap, topic = env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_INPUT_TOPIC"]
    head, tail = by_partition(recs, 0.6)
    first = spawn(env, tmp_path / "first.log")
    processes.append(first)
    head.sort(key=lambda r: (r.offset, r.partition))  # both partitions flow at once
    produce(bootstrap, topic, head[:40])
    wait_for("the first commits", lambda: sum(committed(env).values()) > 0)
    for i in range(40, len(head), 20):  # a flowing stream: many flushes, each writing a slice
        produce(bootstrap, topic, head[i : i + 20])
        time.sleep(0.1)
    heads = {p: int(len(recs[(topic, p)]) * 0.6) for p in range(PARTITIONS)}
    wait_for("the first consumer to commit the head", lambda: committed(env) == heads, timeout=180)
    wait_for("the changelog to be truncated", lambda: all(log_start(bootstrap, state_topic(env)).values()))
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    produce(bootstrap, topic, tail)
    second = spawn(env, tmp_path / "second.log")  # restores from the truncated log
    processes.append(second)
    total = {p: len(recs[(topic, p)]) for p in range(PARTITIONS)}
    wait_for("the second consumer to commit everything", lambda: committed(env) == total, timeout=180)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    assert b"restored the state of partition" in (tmp_path / "second.log").read_bytes()
    assert b"truncated " in (tmp_path / "first.log").read_bytes()
    check_against_offline(env, detector, recs)  # decisions after the restore, and the truncated log's state
