"""The retrain lease: short, kept alive by a heartbeat, lapsing soon after its holder is killed, taken
back by a restarted worker with the same identity; a coalesced retrain names the holder and expiry."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from consumer.retraining.lease import DEFAULT_TTL_S, Lease, LeaseHolder
from consumer.retraining.monitor import WorkerMonitor
from consumer.retraining.retrainer import Retrainer
from consumer.retraining.status import StatusReporter
from consumer.retraining.worker import RetrainWorker
from consumer.wire.control import new_command
from detection import ModelStore
from tests.unit.consumer.retraining.test_worker import KEY, FakeDB, FakeRetrainer, Sink, wait_idle

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Backend(FakeDB):
    """FakeDB whose renewals push the expiry (like WorkerMongo) and can fail on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.renewals: list[float] = []
        self.fail_next = 0

    def renew_lease(self, name: str, owner: str, *, ttl_s: float, now: float) -> bool:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("Mongo timed out")
        if self.lease.get("owner") != owner:
            return False
        self.lease["expires_at"] = now + ttl_s
        self.renewals.append(now)
        return True


def killed_holder(db: FakeDB, owner: str, *, expires_at: float) -> None:
    """What `kill -9` mid-retrain leaves: the lease held, nobody renewing it, never released."""
    db.lease |= {"owner": owner, "expires_at": expires_at}


def test_a_killed_holders_lease_lapses_after_the_short_ttl() -> None:
    clock, db = Clock(), FakeDB()
    killed_holder(db, "host-a-123-abc", expires_at=T0 + DEFAULT_TTL_S)
    other = Lease(cast(Any, db), "host-b-456-def", clock=clock)
    assert other.holder(other.state()) == LeaseHolder("host-a-123-abc", T0 + DEFAULT_TTL_S)
    clock.now = T0 + DEFAULT_TTL_S - 1
    assert not other.acquire()
    clock.now = T0 + DEFAULT_TTL_S + 0.01
    assert other.holder(other.state()) is None
    assert other.acquire()
    assert db.lease["owner"] == "host-b-456-def"
    other.release({"status": "promoted"})
    assert DEFAULT_TTL_S <= 10  # "a few seconds", not the former minute


def test_a_restarted_worker_with_the_same_identity_takes_its_own_lease_back_at_once() -> None:
    clock, db = Clock(), FakeDB()
    killed_holder(db, "worker-1", expires_at=T0 + DEFAULT_TTL_S)
    restarted = Lease(cast(Any, db), "worker-1", clock=clock)
    assert restarted.holder(restarted.state()) is None  # its own: not "another worker"
    assert restarted.acquire()
    assert db.lease["expires_at"] == T0 + DEFAULT_TTL_S
    restarted.release({"status": "promoted"})
    assert Lease(cast(Any, db), "worker-2", clock=clock).acquire()


def test_the_heartbeat_keeps_a_live_holders_lease_and_retries_a_failed_renewal_sooner() -> None:
    db = Backend()
    lease = Lease(cast(Any, db), "live", ttl_s=0.4)  # renewed every 0.1 s, 0.04 s after a failure
    db.fail_next = 1
    assert lease.acquire()
    try:
        deadline = time.monotonic() + 10
        while len(db.renewals) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(db.renewals) >= 3  # the failure did not stop the heartbeat
        assert db.lease["expires_at"] > time.time()
        assert not Lease(cast(Any, db), "other", ttl_s=0.4).acquire()
        assert not lease.lost.is_set()
    finally:
        lease.release({"status": "promoted"})
    renewed = len(db.renewals)
    time.sleep(0.3)
    assert len(db.renewals) == renewed  # released: the heartbeat stopped


def test_the_heartbeat_notices_a_takeover() -> None:
    db = Backend()
    lease = Lease(cast(Any, db), "slow", ttl_s=0.4)
    assert lease.acquire()
    db.lease["owner"] = "thief"  # its lease lapsed (e.g. Mongo unreachable) and another took it
    assert lease.lost.wait(10)
    lease.release({"status": "failed"})


def test_a_coalesced_retrain_names_the_holder_and_when_its_lease_expires(tmp_path: Path) -> None:
    clock, db, sink = Clock(), FakeDB(), Sink()
    monitor = WorkerMonitor()
    retrainer = FakeRetrainer()
    worker = RetrainWorker(
        monitor=monitor,
        control=cast(Any, None),
        reporter=StatusReporter(sink, "status", worker="w1", key=KEY, monitor=monitor),
        db=cast(Any, db),
        store=ModelStore(tmp_path / "models"),
        retrainer=cast(Retrainer, retrainer),
        lease=Lease(cast(Any, db), "w1", clock=clock),
        key=KEY,
        interval_s=86_400,
        cooldown_s=0,
        max_age_s=300,
        clock=clock,
    )
    killed_holder(db, "w0", expires_at=T0 + 7)
    blocked, later = new_command("retrain", KEY), new_command("retrain", KEY)
    worker.handle(blocked.to_json())
    ack = acked(sink, blocked.command_id)[0]
    until = datetime.fromtimestamp(T0 + 7, UTC).isoformat(timespec="seconds")
    assert ack["status"] == "coalesced"
    assert ack["result"] == {"holder": "w0", "lease_expires_at": until}
    assert "w0" in ack["reason"] and until in ack["reason"]
    clock.now = T0 + 7.5  # the dead holder's lease lapsed: the next retrain runs
    worker.handle(later.to_json())
    retrainer.release.set()
    wait_idle(worker)
    assert [a["status"] for a in acked(sink, later.command_id)] == ["accepted", "done"]
    assert retrainer.runs == 1


def acked(sink: Sink, command_id: str) -> list[Mapping[str, Any]]:
    return [m for m in sink.messages if m.get("type") == "command_ack" and m["command_id"] == command_id]


def test_a_lease_that_lapses_while_every_renewal_fails_counts_as_lost() -> None:
    db = Backend()
    lease = Lease(cast(Any, db), "cut-off", ttl_s=0.4)
    assert lease.acquire()
    db.fail_next = 1_000  # Mongo unreachable from this worker only: others may take the lapsed lease
    assert lease.lost.wait(10)
    assert db.lease["expires_at"] <= time.time()
    lease.release({"status": "failed"})
