"""`stockwatch consume` serves the `default` detector exactly as `stockwatch score --baseline` decides
(issue 11 point 6), on the real broker and FerretDB, every command a subprocess of the CLI; in
``every-update`` mode the model groups peers by ``warehouse_id`` (``peer_group_field`` at training
only: score and consume, and consume's inventory seed, follow the model's field).

`train --items S` publishes the model; `score --baseline S --input E` gives the expected decision of
every update; `consume` reads E from a 3-partition topic (partial updates, new items, an unknown
item's incomplete update, labelled reporting errors), seeded from the Mongo inventory holding S,
in two runs (the first stops after part of the stream; the second restores the state from the
changelog). Every decision is captured on the decisions topic and compared per event_id.

What the anomaly topic carries is compared too, in both alert modes: with ``every-update`` each
anomalous update's event; with ``episodes`` (the default) the ``open`` / ``escalated`` / ``resolved``
events that ``score --alerts`` writes (issue 12's lifecycle), compared per causing update.
Legitimately different, so not compared: ``source``, ``anomaly_id`` and ``episode_id`` (derived from
where the update was read: a file line vs a topic partition offset; the grouping of events into
episodes must still match one to one) and ``detected_at`` (the time of scoring).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from consumer.scoring.state.changelog import changelog_topic
from scripts.inventory_sim import SimConfig, simulate

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 3


def stockwatch(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "consumer.cli", *args], cwd=REPO, env=env,
                          capture_output=True, timeout=timeout, check=False)  # fmt: skip


def partition_of(item_id: str) -> int:
    return zlib.crc32(item_id.encode()) % PARTITIONS


def history() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The snapshot S and the stream E: simulated histories plus unknown items' updates."""
    snapshot, events, labels = simulate(SimConfig(seed=77, n_items=240, days=3, error_rate=0.03))
    assert labels and any(len(e) <= 4 for e in events)  # reporting errors and partial updates
    unknown = [
        {"event_id": "x-1", "item_id": "sku-unknown-1", "stock_quantity": 12},  # incomplete: missing_field
        {"event_id": "x-2", "item_id": "sku-unknown-2", "stock_quantity": 40, "min_stock_level": 10,
         "max_stock_level": 90, "price": 7.5, "category": "cat-01"},  # complete: a new item
        {"event_id": "x-3", "item_id": "sku-unknown-2", "stock_quantity": 38},  # then partial, merged
        {"event_id": "x-4", "item_id": "sku-unknown-1", "price": 3.0},  # still unknown: missing_field
    ]  # fmt: skip
    stream = list(events)
    for k, extra in enumerate(unknown):
        at = len(stream) * (k + 1) // (len(unknown) + 1)  # an event time: a file line has no timestamp
        stream.insert(at, extra | {"occurred_at": stream[at]["occurred_at"]})
    return plain(snapshot), plain(stream)


def plain(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plain JSON types (the simulator's numbers may be numpy scalars)."""
    return [orjson.loads(orjson.dumps(d, option=orjson.OPT_SERIALIZE_NUMPY)) for d in docs]


def lines(docs: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(d) + b"\n" for d in docs)


@pytest.fixture(params=["every-update", "episodes"])
def env(request: pytest.FixtureRequest, kafka_bootstrap: str, mongo_uri: str, mongo_db: Any,
        topic_factory: Callable[..., str], unique_name: Callable[[str], str],
        tmp_path: Path) -> Iterator[dict[str, str]]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")} | {
        "PYTHONPATH": str(REPO),
        "STOCKWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "STOCKWATCH_MONGO_URI": mongo_uri,
        "STOCKWATCH_MONGO_DB": mongo_db.name,
        "STOCKWATCH_MODEL_DIR": str(tmp_path / "models"),
        "STOCKWATCH_INPUT_TOPIC": topic_factory("in", partitions=PARTITIONS),
        "STOCKWATCH_ANOMALY_TOPIC": topic_factory("anomalies", partitions=PARTITIONS),
        "STOCKWATCH_DLQ_TOPIC": topic_factory("dlq", partitions=PARTITIONS),
        "STOCKWATCH_DECISIONS_TOPIC": topic_factory("decisions", partitions=PARTITIONS),
        "STOCKWATCH_STATUS_TOPIC": topic_factory("status"),
        "STOCKWATCH_GROUP_ID": unique_name("serve"),
        "STOCKWATCH_HTTP_PORT": "0",
        "STOCKWATCH_MAX_POLL_RECORDS": "50",
        "STOCKWATCH_STATE_SEED": "snapshot",
        "STOCKWATCH_LOG_LEVEL": "INFO",
    }
    if request.param == "every-update":  # one anomaly event per anomalous update; else the default
        env["STOCKWATCH_ALERT_MODE"] = "every-update"
        env["STOCKWATCH_PEER_GROUP_FIELD"] = "warehouse_id"  # train binds it; the rest follow the model
    yield env
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.delete_topics([changelog_topic("{group_id}.{input_topic}.state", group_id=env["STOCKWATCH_GROUP_ID"],
                                             input_topic=env["STOCKWATCH_INPUT_TOPIC"])])  # fmt: skip
    except Exception:  # a leftover test topic is harmless
        pass
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, docs: list[dict[str, Any]]) -> dict[int, int]:
    """Each update keyed by its item, to the item's partition, in order; returns the end offsets."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    ends: dict[int, int] = {}
    try:
        futures = [producer.send(topic, key=d["item_id"].encode(), value=orjson.dumps(d),
                                 partition=partition_of(d["item_id"])) for d in docs]  # fmt: skip
        producer.flush()
        for f in futures:
            meta = f.get(timeout=30)
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        producer.close()
    return ends


def committed(env: dict[str, str]) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=env["STOCKWATCH_KAFKA_BOOTSTRAP"],
                             group_id=env["STOCKWATCH_GROUP_ID"], enable_auto_commit=False)  # fmt: skip
    try:
        topic = env["STOCKWATCH_INPUT_TOPIC"]
        return {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)}
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str) -> list[Any]:
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


def once(pairs: Iterator[tuple[str, Any]]) -> dict[str, Any]:
    """event_id -> value; a redelivered copy (at least once) must agree with the first."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        assert out.setdefault(key, value) == value, key
    return out


def test_consume_decides_every_update_exactly_as_score_with_the_baseline(
    env: dict[str, str], mongo_db: Any, tmp_path: Path
) -> None:
    snapshot, stream = history()
    items, events = tmp_path / "items.jsonl", tmp_path / "events.jsonl"
    items.write_bytes(lines(snapshot))
    events.write_bytes(lines(stream))
    trained = stockwatch(env, "train", "--detector", "default", "--items", str(items))
    assert trained.returncode == 0, trained.stderr
    version = json.loads(trained.stdout)["version"]
    group = env.pop("STOCKWATCH_PEER_GROUP_FIELD", "category")  # from here on, only the model says
    assert json.loads(trained.stdout)["group_field"] == group
    alerts = tmp_path / "alerts.jsonl"
    scored = stockwatch(
        env, "score", "--baseline", str(items), "--input", str(events), "--alerts", str(alerts)
    )
    assert scored.returncode == 1, scored.stderr  # 1: the unknown item's incomplete updates were rejected
    expected = {d["event_id"]: d for d in map(json.loads, scored.stdout.splitlines())}
    rejected = [int(line.split(b": line ")[1].split(b":")[0]) for line in scored.stderr.splitlines()
                if b"rejected: missing_field" in line]  # fmt: skip
    assert sorted(stream[n - 1]["event_id"] for n in rejected) == ["x-1", "x-4"]
    assert len(expected) == len(stream) - 2 and sum(d["is_anomaly"] for d in expected.values()) >= 10

    mongo_db["inventory"].insert_many([dict(d) for d in snapshot])  # the state's seed: S in Mongo
    bootstrap, topic = env["STOCKWATCH_KAFKA_BOOTSTRAP"], env["STOCKWATCH_INPUT_TOPIC"]
    ends = produce(bootstrap, topic, stream)
    assert len(ends) == PARTITIONS
    first = stockwatch(env, "consume", "--max-events", str(len(stream) * 2 // 5), timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    part = committed(env)
    assert 0 < sum(part.values()) < len(stream), part  # stopped mid-stream, every partition started
    log = tmp_path / "second.log"
    second = subprocess.Popen([sys.executable, "-m", "consumer.cli", "consume"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=log.open("wb"))  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while committed(env) != ends and time.monotonic() < deadline and second.poll() is None:
            time.sleep(0.5)
        assert committed(env) == ends, log.read_bytes()[-3000:]
    finally:
        second.terminate()
        assert second.wait(60) == 0, log.read_bytes()[-3000:]
    restarted = [json.loads(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]
    restored = [r for r in restarted if "restored the state of partition" in r["msg"]]
    started_part = {p for p, offset in part.items() if offset > 0}
    assert len(restored) >= len(started_part), "the second run restored the first run's state"
    assert not [r for r in restarted if "afresh" in r["msg"]]  # the state followed the stream throughout

    decisions = once((d["event_id"], d) for d in (orjson.loads(r.value) for r in read_all(bootstrap, env["STOCKWATCH_DECISIONS_TOPIC"])))  # fmt: skip
    published = [orjson.loads(r.value) for r in read_all(bootstrap, env["STOCKWATCH_ANOMALY_TOPIC"])]
    assert set(decisions) == set(expected) and {d["model_version"] for d in decisions.values()} == {version}
    for event_id, want in expected.items():
        got = decisions[event_id]
        assert got["is_anomaly"] == want["is_anomaly"], event_id
        assert got["score"] == pytest.approx(want["score"], abs=1e-12), event_id
        assert got["severity_score"] == pytest.approx(want["severity_score"], abs=1e-9), event_id
    written = [orjson.loads(line) for line in alerts.read_bytes().splitlines()]
    if "STOCKWATCH_ALERT_MODE" in env:  # every-update: `--alerts` holds the anomalous lines of the output
        assert written == [d for d in map(json.loads, scored.stdout.splitlines()) if d["is_anomaly"]]
    else:
        assert {a["status"] for a in written} >= {"open", "resolved"}, "the stream exercises episodes"
    assert len(written) >= 10
    assert_same_alerts(published, written)
    dead = once((orjson.loads(r.value)["event_id"], dict(r.headers)["dlq.reason"].decode())
                for r in read_all(bootstrap, env["STOCKWATCH_DLQ_TOPIC"]))  # fmt: skip
    assert dead == {"x-1": "missing_field", "x-4": "missing_field"}


SAME_WHEREVER_READ = ("item_id", "event_id", "is_anomaly", "threshold", "model_version", "item", "severity",
                      "kind", "rules", "reasons", "links", "status", "first_seen", "last_seen", "occurrences",
                      "max_severity", "renotified", "resolved_at", "duration_s")  # fmt: skip


def assert_same_alerts(published: list[dict[str, Any]], written: list[dict[str, Any]]) -> None:
    """The anomaly topic's events equal ``score --alerts``' lines, per causing update (a redelivered
    copy must agree), apart from the fields named in the module docstring."""

    def view(a: dict[str, Any]) -> tuple[Any, ...]:
        return (*(a.get(k) for k in SAME_WHEREVER_READ), round(a["score"], 9), round(a["severity_score"], 6))

    got = once((a["event_id"], view(a)) for a in published)
    want = once((a["event_id"], view(a)) for a in written)
    assert len(want) == len(written) and got.keys() == want.keys()
    for event_id in want:
        assert got[event_id] == want[event_id], event_id
    if "episode_id" in written[0]:  # the same updates make up each episode, one to one
        pairs = once((a["event_id"], a["episode_id"]) for a in published)
        same = {(pairs[a["event_id"]], a["episode_id"]) for a in written}
        assert len(same) == len({g for g, _ in same}) == len({w for _, w in same})
