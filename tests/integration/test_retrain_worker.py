"""`stockwatch retrain-worker` and `stockwatch ctl` on the real broker and database, training the seed
detector (`detector="seed"`: what these tests assert is the seed's retrain; test_retrain_default.py
covers the default detector)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.adapters.kafka import JsonPublisher, StatusTail
from consumer.adapters.mongo import WorkerMongo
from consumer.cli import main
from consumer.retraining.lease import Lease
from consumer.retraining.retrainer import Retrainer
from consumer.retraining.wiring import retrain_config
from consumer.stores import store_from_settings
from consumer.wire.control import new_command
from consumer.wire.events import item_anomaly_id
from tests.integration.retrain_support import (
    KEY,
    Status,
    inventory_docs,
    publish_model,
    running_worker,
    settings_factory,
)
from tests.schemas import validate, validate_all

pytestmark = pytest.mark.integration
__all__ = ["settings_factory"]  # the fixture, re-exported for pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stack" / "stack.sh"


def stack_env() -> dict[str, str]:
    """The environment for ``stack.sh`` with the cache dir that actually holds the FerretDB binary."""
    env = dict(os.environ)
    if (
        "STOCKWATCH_CACHE_DIR" not in env
        or not (Path(env["STOCKWATCH_CACHE_DIR"]) / "bin" / "ferretdb").exists()
    ):
        for candidate in (ROOT / ".stack" / "cache", ROOT / ".stack"):
            if (candidate / "bin" / "ferretdb").exists():
                env["STOCKWATCH_CACHE_DIR"] = str(candidate)
                break
        else:
            pytest.fail(
                "the local stack's FerretDB binary is missing: cannot restart Mongo after the outage test"
            )
    return env


def stack(action: str) -> None:
    """``stack.sh stop-mongo|start-mongo`` (stops or starts FerretDB alone)."""
    subprocess.run(
        ["bash", str(STACK), action], check=True, capture_output=True, timeout=120, env=stack_env()
    )


def test_startup_then_ctl_retrain_promotes_a_new_version(
    settings_factory: Any, mongo_db: Any, capsys: Any
) -> None:
    settings = settings_factory(detector="seed", retrain_cooldown_s=0)
    mongo_db["inventory"].insert_many([*inventory_docs(300, 1), {"_id": "bad", "price": "NaN"}])
    status = Status(settings)
    try:
        with running_worker(settings):
            # Empty store: the worker trains at start-up.
            status.wait(lambda seen: any(m.get("type") == "model_published" for m in seen))
            first = status.of_type("model_published")[0]
            assert first["trigger"]["kind"] == "startup"
            capsys.readouterr()
            assert main(["ctl", "retrain", "--timeout", "60"]) == 0
            lines = validate_all(
                "ctl-line", (orjson.loads(line) for line in capsys.readouterr().out.splitlines())
            )
            cid = lines[0]["command_id"]
            assert lines[-1]["status"] == "done" and lines[-1]["result"]["status"] == "promoted"
            status.wait(
                lambda seen: any(m.get("command_id") == cid and m["type"] == "model_published" for m in seen)
            )
    finally:
        status.close()
    validate_all("status-message", status.seen)  # every message, as read back from the topic
    published = next(m for m in status.of_type("model_published") if m.get("command_id") == cid)
    store = store_from_settings(settings)
    assert published["version"] == store.current_version() != first["version"]
    assert published["trigger"]["kind"] == "command" and published["n_samples"] == 300
    assert published["training_stats"]["count"] == 300
    assert "rate_shift" in published["gate"]["checks"]  # compared with the start-up model
    assert (settings.model_dir / published["version"] / "report.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["models", "show"]) == 0
    assert f"report: {settings.model_dir / published['version'] / 'report.png'}" in capsys.readouterr().err
    registry = list(mongo_db["model_versions"].find({"status": "promoted"}))
    assert {d["_id"] for d in registry} == {first["version"], published["version"]}
    assert all(d["snapshot"]["invalid"] == 1 for d in registry)


def test_forged_expired_and_replayed_commands_change_nothing(settings_factory: Any, mongo_db: Any) -> None:
    settings = settings_factory(detector="seed", retrain_cooldown_s=0)
    mongo_db["inventory"].insert_many(inventory_docs(200, 2))
    before = publish_model(settings)
    good = new_command("retrain", KEY.encode(), issued_by="test")
    forged = new_command("retrain", b"not-the-control-key-0123456789abcdef", issued_by="mallory")
    old = datetime.now(UTC) - timedelta(seconds=settings.control_max_age_s + 5)
    expired = new_command("rollback", KEY.encode(), args={"version": before}, now=old)
    raw_expired = expired.model_dump(mode="json")
    unsigned = {
        k: v
        for k, v in new_command("reload", KEY.encode()).model_dump(mode="json").items()
        if k != "signature"
    }
    status = Status(settings)
    publisher = JsonPublisher(settings.kafka_bootstrap)
    try:
        with running_worker(settings):
            publisher.publish(settings.control_topic, [forged.model_dump(mode="json"), raw_expired, unsigned])
            status.wait(lambda seen: len([m for m in seen if m.get("status") == "rejected"]) >= 3)
            publisher.publish(settings.control_topic, [good.model_dump(mode="json")])
            status.wait(
                lambda seen: any(
                    m.get("command_id") == good.command_id and m.get("status") == "done" for m in seen
                )
            )
            version_after_good = store_from_settings(settings).current_version()
            publisher.publish(settings.control_topic, [good.model_dump(mode="json")])  # replay, byte for byte
            status.wait(lambda seen: any(m.get("reason", "").startswith("replayed") for m in seen))
    finally:
        publisher.close()
        status.close()
    validate_all("status-message", status.seen)
    validate("control-command", good.model_dump(mode="json"))  # what the worker accepted, as sent
    reasons = {m["command_id"]: m["reason"] for m in status.acks() if m["status"] == "rejected"}
    assert reasons[forged.command_id] == "bad signature"
    assert reasons[expired.command_id].startswith("expired")
    assert reasons[unsigned["command_id"]] == "unsigned command"
    assert reasons[good.command_id].startswith("replayed")
    store = store_from_settings(settings)
    assert store.current_version() == version_after_good  # the replay did not retrain
    assert len(store.versions()) == 2  # the forged/expired/unsigned ones did nothing
    assert mongo_db["model_versions"].count_documents({}) == 1


def test_fifty_retrain_commands_in_a_burst_give_one_retrain(settings_factory: Any, mongo_db: Any) -> None:
    settings = settings_factory(detector="seed", retrain_cooldown_s=600)
    mongo_db["inventory"].insert_many(inventory_docs(300, 3))
    publish_model(settings)
    commands = [new_command("retrain", KEY.encode(), issued_by=f"burst-{i}") for i in range(50)]
    ids = {c.command_id for c in commands}
    status = Status(settings)
    publisher = JsonPublisher(settings.kafka_bootstrap)
    try:
        publisher.publish(settings.control_topic, [c.model_dump(mode="json") for c in commands])
        with running_worker(settings):

            def all_terminal(seen: list[dict[str, Any]]) -> bool:
                done = {
                    m["command_id"]
                    for m in seen
                    if m.get("status") in ("coalesced", "done", "failed", "rejected")
                }
                return ids <= done

            status.wait(all_terminal, timeout_s=90)
    finally:
        publisher.close()
        status.close()
    validate_all("status-message", status.seen)
    acks = [m for m in status.acks() if m["command_id"] in ids]
    by_status: dict[str, int] = {}
    for m in acks:
        by_status[m["status"]] = by_status.get(m["status"], 0) + 1
    assert by_status == {"accepted": 1, "done": 1, "coalesced": 49}
    assert len(status.of_type("model_published")) == 1
    assert len(store_from_settings(settings).versions()) == 2
    assert mongo_db["model_versions"].count_documents({}) == 1


def test_mongo_outage_mid_retrain_fails_cleanly_and_keeps_the_model(
    settings_factory: Any, mongo_db: Any
) -> None:
    settings = settings_factory(
        detector="seed", retrain_cooldown_s=0, retrain_max_attempts=2, retrain_batch_size=50
    )
    mongo_db["inventory"].insert_many(inventory_docs(400, 4))
    serving = publish_model(settings)
    stack_env()  # fail here, before stopping anything, if Mongo could not be started again
    stopped: list[bool] = []

    def stop_mongo_once(n_read: int) -> None:
        if not stopped:
            stopped.append(True)
            stack("stop-mongo")

    status = Status(settings)
    try:
        with running_worker(settings, on_chunk=stop_mongo_once):
            cmd = new_command("retrain", KEY.encode(), issued_by="outage-test")
            publisher = JsonPublisher(settings.kafka_bootstrap)
            publisher.publish(settings.control_topic, [cmd.model_dump(mode="json")])
            publisher.close()
            try:
                status.wait(
                    lambda _: any(m["status"] == "failed" for m in status.acks(cmd.command_id)), timeout_s=90
                )
            finally:
                stack("start-mongo")
    finally:
        status.close()
    failed = next(m for m in status.acks(cmd.command_id) if m["status"] == "failed")
    assert stopped and failed["result"]["attempts"] == 2
    assert ("failed" in failed["reason"] and "reading" in failed["reason"]) or "Mongo" in failed["reason"]
    store = store_from_settings(settings)
    assert store.current_version() == serving and len(store.versions()) == 1
    assert status.of_type("model_published") == []


def test_gate_rejects_garbage_and_keeps_the_candidate_aside(settings_factory: Any, mongo_db: Any) -> None:
    settings = settings_factory(detector="seed", retrain_cooldown_s=0)
    serving = publish_model(settings)
    retrainer = build_retrainer(settings)
    # Half the snapshot planted anomalies: learnt as normal, so it flags far less than the current model.
    mongo_db["inventory"].insert_many(inventory_docs(400, 5, planted=0.5))
    planted = retrainer.run({"kind": "test"})
    assert planted.status == "rejected", planted.reasons
    assert any("shift" in r for r in planted.reasons)
    kept = settings.model_dir / "rejected" / str(planted.candidate_id)
    assert {p.name for p in kept.iterdir()} >= {"model.joblib", "metadata.json", "gate.json", "report.png"}
    # All-identical items: a degenerate snapshot, rejected before training.
    mongo_db["inventory"].delete_many({})
    mongo_db["inventory"].insert_many(inventory_docs(50, 6, identical=True))
    constant = retrainer.run({"kind": "test"})
    assert constant.status == "rejected" and "degenerate" in constant.reasons[0]
    # Fewer than 10 usable items: no model, a clear status.
    mongo_db["inventory"].delete_many({})
    mongo_db["inventory"].insert_many([*inventory_docs(9, 7), {"_id": "x", "stock_quantity": True}])
    few = retrainer.run({"kind": "test"})
    assert few.status == "insufficient_data" and few.snapshot["invalid"] == 1
    store = store_from_settings(settings)
    assert store.current_version() == serving and len(store.versions()) == 1
    rejected = {d["_id"]: d for d in mongo_db["model_versions"].find({"status": "rejected"})}
    assert set(rejected) == {planted.candidate_id, constant.candidate_id}
    assert rejected[planted.candidate_id]["gate"]["reasons"] == planted.reasons
    assert rejected[planted.candidate_id]["metadata"]["n_samples"] == 400


def test_flagged_items_are_left_out_of_training(settings_factory: Any, mongo_db: Any) -> None:
    settings = settings_factory(detector="seed")
    docs = inventory_docs(100, 8)
    mongo_db["inventory"].insert_many(docs)
    mongo_db["anomalies"].insert_many(
        [{"_id": f"a{i}", "item_id": d["_id"]} for i, d in enumerate(docs[:20])]
    )
    out = build_retrainer(settings).run({"kind": "test"})
    assert (
        out.status == "promoted" and out.snapshot["usable"] == 80 and out.snapshot["excluded_flagged"] == 20
    )
    settings = settings_factory(
        detector="seed", retrain_exclude_filter='{"price": {"$gt": 25}}', retrain_exclude_flagged="false"
    )
    expected = sum(1 for d in docs if d["price"] <= 25)
    out = build_retrainer(settings).run({"kind": "test"})
    assert out.snapshot["usable"] == expected


def test_lease_gives_one_run_at_a_time_across_workers(mongo_uri: str, mongo_db: Any) -> None:
    a_db, b_db = WorkerMongo(mongo_uri, mongo_db.name), WorkerMongo(mongo_uri, mongo_db.name)
    a, b = Lease(a_db, "worker-a", ttl_s=3), Lease(b_db, "worker-b", ttl_s=3)
    try:
        assert a.acquire()
        assert not b.acquire()
        assert b.held_by_other(b.state()) == "worker-a"
        time.sleep(4)  # past the 3 s ttl, but renewed in the background every ttl/3: still a's
        assert not b.acquire()
        a.release({"status": "promoted"})
        assert b.acquire()
        assert a.seconds_since_finished(a.state()) is not None
        b.release({"status": "promoted"})
    finally:
        a_db.close()
        b_db.close()


def test_scan_prints_the_anomalies_of_the_snapshot(settings_factory: Any, mongo_db: Any, capsys: Any) -> None:
    settings = settings_factory(detector="seed")
    version = publish_model(settings)
    docs = inventory_docs(200, 9)
    docs[0] |= {"stock_quantity": 80_000, "price": 1500.0}
    mongo_db["inventory"].insert_many(docs)
    assert main(["scan"]) == 0
    out, err = capsys.readouterr()
    events = validate_all("anomaly-event", (orjson.loads(line) for line in out.splitlines()))
    assert docs[0]["_id"] in {e["item_id"] for e in events}
    source = f"mongo:{settings.mongo_db}.{settings.mongo_collection}"
    for e in events:
        assert e["source"]["topic"] == source and e["model_version"] == version
        assert e["anomaly_id"] == item_anomaly_id(source, e["item_id"], version)
    summary = validate("scan-summary", orjson.loads(err.splitlines()[-1]))
    assert summary == {"scanned": 200, "anomalies": len(events), "invalid": 0, "model_version": version}
    tail = StatusTail(settings.kafka_bootstrap, settings.anomaly_topic)
    tail.start()
    try:
        assert main(["scan", "--publish"]) == 0
        published: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while len(published) < len(events) and time.monotonic() < deadline:
            published += tail.poll(0.5)
    finally:
        tail.close()
    assert sorted(e["anomaly_id"] for e in published) == sorted(e["anomaly_id"] for e in events)


def build_retrainer(settings: Any) -> Retrainer:
    """A retrainer on the real Mongo and store; status events are collected in ``.events``."""
    db = WorkerMongo(settings.mongo_uri, settings.mongo_db, timeout_ms=3000)
    events: list[dict[str, Any]] = []
    return Retrainer(
        db=db, store=store_from_settings(settings), announce=events.append, config=retrain_config(settings)
    )


def test_ctl_status_rollback_reload_and_timeouts(settings_factory: Any, mongo_db: Any, capsys: Any) -> None:
    settings = settings_factory(detector="seed")
    first = publish_model(settings, seed=1)
    second = publish_model(settings, seed=2)

    def ctl(*argv: str) -> tuple[int, list[dict[str, Any]]]:
        code = main(["ctl", *argv, "--timeout", "30"])
        out = capsys.readouterr().out.splitlines()
        return code, validate_all("ctl-line", (orjson.loads(line) for line in out))

    status = Status(settings)
    try:
        with running_worker(settings):
            code, out = ctl("status")
            assert code == 0 and out[-1]["result"]["current_version"] == second
            code, out = ctl("rollback", first)
            assert code == 0 and out[-1]["status"] == "done"
            assert store_from_settings(settings).current_version() == first
            code, out = ctl("reload")
            assert code == 0 and out[-1]["result"]["version"] == first
            code, out = ctl("rollback", "20200101T000000Z-deadbeef")
            assert code == 1 and out[-1]["status"] == "failed"
            assert main(["ctl", "status", "--no-wait"]) == 0
            code, out = ctl("retrain")  # the inventory is empty: it runs, but nothing is promoted
            assert code == 4 and out[-1]["result"]["status"] == "insufficient_data"
            status.wait(lambda seen: len([m for m in seen if m.get("type") == "model_published"]) >= 2)
    finally:
        status.close()
    validate_all("status-message", status.seen)  # incl. the short model_published of rollback/reload
    kinds = [m["trigger"]["command_id"] is not None for m in status.of_type("model_published")]
    assert kinds == [True, True]  # rollback and reload each told the consumers
    assert main(["ctl", "status", "--timeout", "1.5"]) == 3  # nobody answers: timeout
    assert main(["models", "show"]) == 0
    capsys.readouterr()


def test_a_running_consumer_switches_to_the_retrained_model(
    settings_factory: Any, mongo_db: Any, topic_factory: Any, unique_name: Any, capsys: Any
) -> None:
    from consumer.scoring.wiring import build_service

    settings = settings_factory(
        detector="seed",
        retrain_cooldown_s=0,
        input_topic=topic_factory("in"),
        dlq_topic=topic_factory("dlq"),
        group_id=unique_name("scorers"),
        http_port=0,
        model_poll_interval_s=60,  # long: the switch must come from the model_published announcement
    )
    mongo_db["inventory"].insert_many(inventory_docs(300, 10))
    serving = publish_model(settings)
    service = build_service(settings)
    thread = threading.Thread(target=service.run, kwargs={"timeout": 90}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while service.health.model_version != serving:
            assert time.monotonic() < deadline, "the consumer never loaded the first model"
            time.sleep(0.1)
        with running_worker(settings):
            assert main(["ctl", "retrain", "--timeout", "60"]) == 0
        new = store_from_settings(settings).current_version()
        assert new != serving
        deadline = time.monotonic() + 20
        while service.health.model_version != new:
            assert time.monotonic() < deadline, "the consumer did not switch to the retrained model"
            time.sleep(0.1)
    finally:
        service.request_stop()
        thread.join(30)
    capsys.readouterr()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def test_a_taken_worker_http_port_is_one_line_naming_the_setting(settings_factory: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings_factory(detector="seed", worker_http_port=taken.getsockname()[1])
        done = subprocess.run(
            [sys.executable, "-m", "consumer.cli", "retrain-worker"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    err = done.stderr.decode().strip().splitlines()
    assert err[-1].startswith("stockwatch retrain-worker: cannot serve metrics on 127.0.0.1:")
    assert "STOCKWATCH_WORKER_HTTP_PORT" in err[-1] and "Traceback" not in done.stderr.decode()


def test_the_retrain_worker_process_serves_and_stops_on_sigterm(
    settings_factory: Any, mongo_db: Any, capsys: Any
) -> None:
    port = free_port()
    settings = settings_factory(detector="seed", worker_http_port=port)
    mongo_db["inventory"].insert_many(inventory_docs(100, 11))
    status = Status(settings)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "retrain-worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        status.wait(lambda seen: any(m.get("type") == "model_published" for m in seen))  # start-up retrain
        assert main(["ctl", "status", "--timeout", "30"]) == 0
        deadline = time.monotonic() + 30
        while http_get(port, "/readyz")[0] != 200:  # control partition assigned, Mongo read
            assert time.monotonic() < deadline, http_get(port, "/readyz")
            time.sleep(0.2)
        assert http_get(port, "/healthz")[0] == 200
        code, metrics = http_get(port, "/metrics")
        assert code == 200
        assert b'stockwatch_worker_retrains_total{status="promoted"} 1.0' in metrics
        assert b'stockwatch_worker_commands_total{ack="done",command="status"} 1.0' in metrics
        assert b"stockwatch_worker_control_partitions 1.0" in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        status.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert store_from_settings(settings).current_version() is not None
    capsys.readouterr()


def test_retrain_is_coalesced_while_another_worker_holds_the_lease_and_in_the_cooldown(
    settings_factory: Any, mongo_db: Any, capsys: Any
) -> None:
    settings = settings_factory(detector="seed", retrain_cooldown_s=600)
    publish_model(settings)
    mongo_db["leases"].insert_one(
        {"_id": "retrain", "owner": "other-worker", "expires_at": time.time() + 600}
    )
    with running_worker(settings):
        capsys.readouterr()
        assert main(["ctl", "retrain", "--timeout", "30"]) == 5  # coalesced has its own exit status
        out, err = capsys.readouterr()
        ack = orjson.loads(out.splitlines()[-1])
        assert ack["status"] == "coalesced" and "other-worker" in ack["reason"]
        assert "was coalesced" in err
        mongo_db["leases"].update_one(
            {"_id": "retrain"}, {"$set": {"owner": None, "expires_at": 0.0, "finished_at": time.time()}}
        )
        assert main(["ctl", "retrain", "--timeout", "30"]) == 5
        ack = orjson.loads(capsys.readouterr().out.splitlines()[-1])
        assert ack["status"] == "coalesced" and "cooldown" in ack["reason"]
        assert len(store_from_settings(settings).versions()) == 1
        code = main(["ctl", "retrain", "--force", "--timeout", "60"])  # --force: past the cooldown
        statuses = [orjson.loads(line).get("status") for line in capsys.readouterr().out.splitlines()]
        assert statuses[1] == "accepted" and code in (0, 4), statuses


_DOOMED_HOLDER = """
import sys, time
from consumer.adapters.mongo import WorkerMongo
from consumer.retraining.lease import Lease
lease = Lease(WorkerMongo(sys.argv[1], sys.argv[2]), "doomed-worker", ttl_s=4)
assert lease.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_kill_9_holders_lease_lapses_within_its_ttl_and_the_next_retrain_runs(
    settings_factory: Any, mongo_db: Any, capsys: Any
) -> None:
    settings = settings_factory(detector="seed", retrain_cooldown_s=0)
    publish_model(settings)
    holder = subprocess.Popen(  # a worker mid-retrain: holds the lease, its heartbeat renewing it
        [sys.executable, "-c", _DOOMED_HOLDER, settings.mongo.uri, settings.mongo.db],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        time.sleep(5)  # past the 4 s ttl: only the heartbeat keeps it
        doc = mongo_db["leases"].find_one({"_id": "retrain"})
        assert doc["owner"] == "doomed-worker" and doc["expires_at"] > time.time()
    finally:
        holder.kill()  # SIGKILL: no release, no more renewals
        holder.wait(10)
    with running_worker(settings):
        capsys.readouterr()
        assert main(["ctl", "retrain", "--timeout", "30"]) == 5
        ack = orjson.loads(capsys.readouterr().out.splitlines()[-1])
        assert ack["status"] == "coalesced" and "doomed-worker" in ack["reason"]
        until = datetime.fromisoformat(ack["result"]["lease_expires_at"])
        assert (
            ack["result"]["holder"] == "doomed-worker" and ack["result"]["lease_expires_at"] in ack["reason"]
        )
        assert until <= datetime.now(UTC) + timedelta(seconds=5)  # the 4 s lease, not a minute
        time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1.5)
        code = main(["ctl", "retrain", "--timeout", "60"])
        statuses = [orjson.loads(line).get("status") for line in capsys.readouterr().out.splitlines()]
        assert statuses[1] == "accepted" and code in (0, 4), statuses


def test_a_restarted_worker_with_the_same_id_takes_its_own_lease_back(mongo_uri: str, mongo_db: Any) -> None:
    db = WorkerMongo(mongo_uri, mongo_db.name)
    try:
        assert db.try_acquire_lease("retrain", "worker-7", ttl_s=600, now=time.time())  # then killed
        assert not Lease(db, "worker-8").acquire()
        restarted = Lease(db, "worker-7")
        assert restarted.holder(restarted.state()) is None and restarted.acquire()
        restarted.release({"status": "promoted"})
    finally:
        db.close()


def test_two_workers_share_the_commands_and_run_one_retrain(
    settings_factory: Any, mongo_db: Any, topic_factory: Any
) -> None:
    settings = settings_factory(
        detector="seed", retrain_cooldown_s=600, control_topic=topic_factory("control", partitions=2)
    )
    mongo_db["inventory"].insert_many(inventory_docs(300, 12))
    publish_model(settings)
    commands = [new_command("retrain", KEY.encode(), issued_by=f"two-{i}") for i in range(40)]
    ids = {c.command_id for c in commands}
    status = Status(settings)
    publisher = JsonPublisher(settings.kafka_bootstrap)
    try:
        with running_worker(settings) as a, running_worker(settings) as b:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # wait until the group has given each worker a partition
                if a.control.assignment() and b.control.assignment():  # type: ignore[attr-defined]
                    break
                time.sleep(0.2)
            for i, c in enumerate(commands):
                publisher.publish(settings.control_topic, [c.model_dump(mode="json")], partition=i % 2)
            terminal = ("coalesced", "done", "failed", "rejected")
            status.wait(
                lambda seen: ids <= {m["command_id"] for m in seen if m.get("status") in terminal}, 90
            )
    finally:
        publisher.close()
        status.close()
    acks = [m for m in status.acks() if m["command_id"] in ids]
    assert {m["worker"] for m in acks} == {a.lease.owner, b.lease.owner}  # both handled commands
    assert [m["status"] for m in acks].count("accepted") == 1
    assert len(status.of_type("model_published")) == 1
    assert len(store_from_settings(settings).versions()) == 2


def test_the_schedule_retrains_without_a_command(settings_factory: Any, mongo_db: Any) -> None:
    settings = settings_factory(detector="seed", retrain_interval_s=2)
    mongo_db["inventory"].insert_many(inventory_docs(200, 13))
    publish_model(settings)
    status = Status(settings)
    try:
        with running_worker(settings):
            status.wait(lambda seen: any(m.get("type") == "model_published" for m in seen), timeout_s=60)
    finally:
        status.close()
    published = status.of_type("model_published")[0]
    assert published["trigger"]["kind"] == "schedule" and published["command_id"] is None
