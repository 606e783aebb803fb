"""The worker's command handling with in-memory collaborators (the real ones: tests/integration)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson
import pytest

from consumer.ports import KafkaUnavailableError, MongoUnavailableError
from consumer.retraining.lease import Lease
from consumer.retraining.monitor import WorkerMonitor
from consumer.retraining.retrainer import Retrainer, RetrainOutcome, model_published_event
from consumer.retraining.status import StatusReporter
from consumer.retraining.worker import RetrainWorker
from consumer.wire.control import message_is_signed, new_command
from detection import ModelStore, parse_item, train_model
from tests.schemas import validate, validate_all

KEY = b"unit-control-key-0123456789abcdef"


class FakeDB:
    """Lease and seen-command state of WorkerMongo, in memory."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] = {}
        self.seen: set[str] = set()

    def try_acquire_lease(self, name: str, owner: str, *, ttl_s: float, now: float) -> dict[str, Any] | None:
        free = (
            not self.lease.get("owner")
            or self.lease.get("expires_at", 0) < now
            or self.lease["owner"] == owner
        )
        if not free:
            return None
        self.lease |= {"owner": owner, "expires_at": now + ttl_s}
        return self.lease

    def renew_lease(self, name: str, owner: str, *, ttl_s: float, now: float) -> bool:
        return self.lease.get("owner") == owner

    def release_lease(self, name: str, owner: str, *, now: float, outcome: Mapping[str, Any]) -> None:
        self.lease |= {"owner": None, "expires_at": 0.0, "finished_at": now, "last": dict(outcome)}

    def read_lease(self, name: str) -> dict[str, Any] | None:
        return dict(self.lease) or None

    def remember_command(self, command_id: str, *, command: str, issued_at: str, now: float) -> bool:
        fresh = command_id not in self.seen
        self.seen.add(command_id)
        return fresh

    def prune_commands(self, *, older_than: float) -> int:
        return 0


class FakeRetrainer:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.runs = 0
        self.status = "promoted"

    def run(self, trigger: dict[str, Any], **_: Any) -> RetrainOutcome:
        self.runs += 1
        self.release.wait(10)
        return RetrainOutcome(run_id=f"r{self.runs}", status=self.status, trigger=trigger, version="v2")


class Sink:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def publish(self, topic: str, messages: Any, *, key: bytes | None = None) -> None:
        self.messages += messages


@pytest.fixture
def parts(tmp_path: Path) -> tuple[RetrainWorker, Sink, FakeRetrainer, FakeDB]:
    db, sink, retrainer = FakeDB(), Sink(), FakeRetrainer()
    monitor = WorkerMonitor()
    worker = RetrainWorker(
        monitor=monitor,
        control=cast(Any, None),
        reporter=StatusReporter(sink, "status", worker="w1", key=KEY, monitor=monitor),
        db=cast(Any, db),
        store=ModelStore(tmp_path / "models"),
        retrainer=cast(Retrainer, retrainer),
        lease=Lease(cast(Any, db), "w1", ttl_s=30),
        key=KEY,
        interval_s=86_400,
        cooldown_s=60,
        max_age_s=300,
    )
    return worker, sink, retrainer, db


def acks(sink: Sink, command_id: str) -> list[str]:
    return [
        m["status"] for m in sink.messages if m.get("type") == "command_ack" and m["command_id"] == command_id
    ]


def wait_idle(worker: RetrainWorker) -> None:
    run = worker._run
    if run is not None:
        run.join(10)


def test_retrains_coalesce_while_running_and_in_the_cooldown(parts: Any) -> None:
    worker, sink, retrainer, _ = parts
    first, second, third = (new_command("retrain", KEY) for _ in range(3))
    worker.handle(first.to_json())
    worker.handle(second.to_json())  # the first is still running
    retrainer.release.set()
    wait_idle(worker)
    worker.handle(third.to_json())  # just finished: cooldown
    assert acks(sink, first.command_id) == ["accepted", "done"]
    assert acks(sink, second.command_id) == ["coalesced"]
    assert acks(sink, third.command_id) == ["coalesced"]
    assert retrainer.runs == 1


def test_a_forced_retrain_bypasses_the_cooldown_but_not_a_running_retrain(parts: Any) -> None:
    worker, sink, retrainer, _ = parts
    first = new_command("retrain", KEY)
    worker.handle(first.to_json())
    while_running = new_command("retrain", KEY, args={"force": True})
    worker.handle(while_running.to_json())
    retrainer.release.set()
    wait_idle(worker)
    forced = new_command("retrain", KEY, args={"force": True})
    worker.handle(forced.to_json())  # inside the cooldown, but forced
    wait_idle(worker)
    assert acks(sink, while_running.command_id) == ["coalesced"]
    assert acks(sink, forced.command_id) == ["accepted", "done"]
    assert retrainer.runs == 2


def test_forged_and_replayed_commands_are_rejected(parts: Any) -> None:
    worker, sink, retrainer, _ = parts
    forged = new_command("retrain", b"wrong-key-0123456789abcdef-0123456")
    worker.handle(forged.to_json())
    status = new_command("status", KEY)
    worker.handle(status.to_json())
    worker.handle(status.to_json())
    assert acks(sink, forged.command_id) == ["rejected"]
    assert acks(sink, status.command_id) == ["done", "rejected"]
    assert retrainer.runs == 0
    rejected = [m for m in sink.messages if m["status"] == "rejected"]
    assert [m["reason"] for m in rejected] == ["bad signature", "replayed: command_id was seen before"]


def test_rollback_is_refused_while_a_retrain_runs(parts: Any) -> None:
    worker, sink, retrainer, _ = parts
    worker.handle(new_command("retrain", KEY).to_json())
    rollback = new_command("rollback", KEY, args={"version": "20260101T000000Z-00000000"})
    worker.handle(rollback.to_json())
    retrainer.release.set()
    wait_idle(worker)
    assert acks(sink, rollback.command_id) == ["failed"]
    assert "running" in next(m["reason"] for m in sink.messages if m.get("command_id") == rollback.command_id)


def test_rollback_with_a_fifo_planted_as_the_store_lock_is_acked_failed(parts: Any) -> None:
    worker, sink, _, _ = parts
    rng = np.random.default_rng(3)
    rows = [{"item_id": f"sku-{i}", "stock_quantity": float(rng.integers(50, 200)), "min_stock_level": 50,
             "max_stock_level": 200, "price": float(rng.uniform(5, 20))} for i in range(100)]  # fmt: skip
    version = worker.store.publish(train_model([parse_item(r) for r in rows]))
    root = worker.store.root
    (root / ".lock").unlink()
    os.mkfifo(root / ".lock")
    rollback = new_command("rollback", KEY, args={"version": version})
    handler = threading.Thread(target=worker.handle, args=(rollback.to_json(),), daemon=True)
    handler.start()
    handler.join(10)
    assert not handler.is_alive(), "a FIFO .lock must not wedge the worker"
    assert acks(sink, rollback.command_id) == ["failed"]
    reason = next(m["reason"] for m in sink.messages if m.get("command_id") == rollback.command_id)
    assert reason == f"{root / '.lock'} is not a regular file; remove it"


def test_undecodable_message_is_reported(parts: Any) -> None:
    worker, sink, *_ = parts
    worker.handle(b"{not json")
    worker.handle(orjson.dumps({"command": "retrain"}))
    assert [m["status"] for m in sink.messages] == ["rejected", "rejected"]
    assert sink.messages[0]["command_id"] is None


# --- no command can stop the worker; every ack is signed (issue 13, defects 1 and 6) ---------------

DEEP = (
    b'{"command":"status","command_id":"deep-1","issued_at":"2026-11-25T18:00:00Z","args":'
    + b'{"a":' * 300
    + b"1"
    + b"}" * 300
    + b',"signature":"00"}'
)


class Feed:
    """A control topic in memory: hands out its records once, records each commit."""

    def __init__(self, records: list[tuple[int, int, bytes | None]], sink: Sink) -> None:
        self.records, self.sink = records, sink
        self.commits: list[tuple[int, int, int]] = []  # partition, offset, status messages by then

    def poll(self, timeout_s: float) -> list[tuple[int, int, bytes | None]]:
        records, self.records = self.records, []
        return records

    def commit(self, partition: int, offset: int) -> None:
        self.commits.append((partition, offset, len(self.sink.messages)))

    def assignment(self) -> set[int]:
        return {0}


def test_the_300_level_command_is_rejected_with_its_id_and_the_next_one_is_served(parts: Any) -> None:
    worker, sink, *_ = parts
    status = new_command("status", KEY)
    worker.control = Feed([(0, 7, DEEP), (0, 8, b"\xff\xfe\x00garbage"), (0, 9, status.to_json())], sink)
    worker.step(0.01)
    assert acks(sink, "deep-1") == ["rejected"]
    assert "deeper than 8" in sink.messages[0]["reason"]
    assert acks(sink, status.command_id) == ["done"]
    # each offset is committed right after its own acknowledgement, not after the batch
    assert worker.control.commits == [(0, 7, 1), (0, 8, 2), (0, 9, 3)]


def test_an_unexpected_error_while_verifying_becomes_a_rejection(parts: Any, monkeypatch: Any) -> None:
    worker, sink, _, db = parts

    def broken(*_: Any, **__: Any) -> bool:
        raise RuntimeError("a bug")

    monkeypatch.setattr(db, "remember_command", broken)
    cmd = new_command("status", KEY)
    worker.handle(cmd.to_json())
    assert acks(sink, cmd.command_id) == ["rejected"]
    assert sink.messages[-1]["reason"] == "internal error while verifying: RuntimeError"


def test_an_unexpected_error_while_acting_becomes_a_failure(parts: Any, monkeypatch: Any) -> None:
    worker, sink, *_ = parts

    def broken() -> dict[str, Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(worker, "describe", broken)
    cmd = new_command("status", KEY)
    worker.handle(cmd.to_json())
    assert acks(sink, cmd.command_id) == ["failed"]
    assert "RuntimeError: a bug" in sink.messages[-1]["reason"]


def test_every_status_message_is_signed_and_rejections_quote_the_message_digest(parts: Any) -> None:
    worker, sink, retrainer, _ = parts
    retrainer.release.set()
    retrain = new_command("retrain", KEY)
    worker.handle(retrain.to_json())
    wait_idle(worker)
    worker.handle(DEEP)
    worker.reporter.publish({"type": "model_published", "version": "v2"})
    kinds = [m.get("status", m["type"]) for m in sink.messages]
    assert kinds == ["accepted", "retrain_finished", "done", "rejected", "model_published"]
    assert all(message_is_signed(orjson.loads(orjson.dumps(m)), KEY) for m in sink.messages)
    assert sink.messages[3]["digest"] == hashlib.sha256(DEEP).hexdigest()


def test_every_status_message_fits_the_documented_schema(parts: Any, tmp_path: Path) -> None:
    worker, sink, retrainer, _ = parts
    retrain, status = new_command("retrain", KEY), new_command("status", KEY)
    worker.handle(retrain.to_json())
    worker.handle(new_command("retrain", KEY).to_json())  # coalesced
    retrainer.release.set()
    wait_idle(worker)
    worker.handle(status.to_json())
    worker.handle(status.to_json())  # replayed
    worker.handle(new_command("reload", KEY).to_json())  # failed: no model yet
    worker.handle(b"{not json")
    kinds = {(m["type"], m.get("status")) for m in validate_all("status-message", sink.messages)}
    assert {("command_ack", s) for s in ("accepted", "done", "coalesced", "rejected", "failed")} <= kinds
    assert ("retrain_finished", None) in kinds


def test_a_retrains_model_published_announcement_fits_the_status_schema() -> None:
    out = RetrainOutcome(
        run_id="r1",
        status="promoted",
        trigger={"kind": "schedule"},
        version="20261125T180102Z-1a2b3c4d",
        snapshot={"usable": 300},
        gate={"passed": True, "checks": {"training_anomaly_rate": 0.1}},
        training_stats={"count": 300},
        report="/models/20261125T180102Z-1a2b3c4d/report.png",
    )
    event = validate("status-message", model_published_event(out))
    assert (event["command_id"], event["anomaly_rate"], event["n_samples"]) == (None, 0.1, 300)


# --- metrics and probes (issue 14, point 6) ----------------------------------------------------------


def sample(worker: RetrainWorker, name: str, **labels: str) -> float:
    value = worker.monitor.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_retrain_outcomes_commands_and_the_lease_are_counted(parts: Any) -> None:
    worker, _, retrainer, _ = parts
    worker.handle(new_command("retrain", KEY).to_json())
    assert sample(worker, "stockwatch_worker_lease_held") == 1
    worker.handle(new_command("retrain", KEY).to_json())  # coalesced: running
    retrainer.release.set()
    wait_idle(worker)
    worker.handle(new_command("retrain", KEY).to_json())  # coalesced: cooldown
    worker.handle(b"{not json")
    assert sample(worker, "stockwatch_worker_retrains_total", status="promoted") == 1
    assert sample(worker, "stockwatch_worker_retrains_total", status="coalesced") == 2
    assert sample(worker, "stockwatch_worker_retrain_duration_seconds_count") == 1
    assert sample(worker, "stockwatch_worker_lease_held") == 0
    assert sample(worker, "stockwatch_worker_last_successful_retrain_timestamp_seconds") > 0
    assert sample(worker, "stockwatch_worker_commands_total", command="retrain", ack="accepted") == 1
    assert sample(worker, "stockwatch_worker_commands_total", command="retrain", ack="done") == 1
    assert sample(worker, "stockwatch_worker_commands_total", command="retrain", ack="coalesced") == 2
    assert sample(worker, "stockwatch_worker_commands_total", command="unknown", ack="rejected") == 1


def test_a_forged_command_name_never_becomes_a_label_value(parts: Any) -> None:
    worker, *_ = parts
    worker.handle(
        orjson.dumps({"command": "x" * 40, "command_id": "c1", "issued_at": "now", "signature": "0"})
    )
    rendered = worker.monitor.metrics.render().decode()
    assert "x" * 40 not in rendered
    assert sample(worker, "stockwatch_worker_commands_total", command="unknown", ack="rejected") == 1


def test_three_failed_retrains_in_a_row_make_the_worker_unready_until_one_succeeds(parts: Any) -> None:
    worker, _, retrainer, db = parts
    retrainer.release.set()
    retrainer.status = "failed"
    worker.control = Feed([], Sink())
    worker.step(0.01)  # ticks, holds partition 0, reads the lease from Mongo
    assert worker.monitor.health.readyz()[0]
    for n in range(1, 4):
        db.lease.pop("finished_at", None)  # no cooldown between the runs of this test
        worker.request_retrain({"kind": "schedule"}, None)
        wait_idle(worker)
        assert sample(worker, "stockwatch_worker_retrain_consecutive_failures") == n
    ok, body = worker.monitor.health.readyz()
    assert not ok and body["missing"] == ["the last 3 retrains failed"]
    assert sample(worker, "stockwatch_worker_retrains_total", status="failed") == 3
    retrainer.status = "rejected"  # a decision, even a rejection, is the worker working
    db.lease.pop("finished_at", None)
    worker.request_retrain({"kind": "schedule"}, None)
    wait_idle(worker)
    assert worker.monitor.health.readyz()[0]
    assert sample(worker, "stockwatch_worker_retrain_consecutive_failures") == 0


class DownDB(FakeDB):
    def read_lease(self, name: str) -> dict[str, Any] | None:
        raise MongoUnavailableError("no servers at 127.0.0.1:1")


def test_mongo_unavailable_is_counted_and_makes_the_worker_unready(parts: Any) -> None:
    worker, *_ = parts
    worker.control = Feed([], Sink())
    worker.step(0.01)
    assert worker.monitor.health.readyz()[0]
    worker.lease.backend = DownDB()
    worker._next_schedule_check = 0.0
    worker.step(0.01)
    ok, body = worker.monitor.health.readyz()
    assert not ok and body["missing"] == ["Mongo unavailable: no servers at 127.0.0.1:1"]
    assert sample(worker, "stockwatch_worker_dependency_errors_total", dependency="mongo") == 1
    assert worker.monitor.health.healthz()[0]  # alive all the same: only not ready


class DownSink(Sink):
    def publish(self, topic: str, messages: Any, *, key: bytes | None = None) -> None:
        raise KafkaUnavailableError("broker down")


def test_status_publish_failures_are_counted(parts: Any) -> None:
    worker, *_ = parts
    worker.reporter.sink = DownSink()
    worker.handle(new_command("status", KEY).to_json())
    assert sample(worker, "stockwatch_worker_status_publish_failures_total") == 1
    assert sample(worker, "stockwatch_worker_dependency_errors_total", dependency="kafka") == 1
