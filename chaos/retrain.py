"""FerretDB killed -9 during a retrain: the serving model keeps serving, the failure is reported
on the status topic, and once FerretDB is back the next retrain is promoted and served."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from chaos.common import Ctx, Result, terminate, wait_until
from chaos.kafka_io import (
    PacedProducer,
    all_committed,
    committed,
    service_topics,
    tally,
    wait_advanced,
    warm_up,
)
from chaos.worker import ctl, seed_inventory, status_messages, worker_env
from detection import ModelStore


def _first(messages: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((m for m in messages if all(m.get(k) == v for k, v in match.items())), None)


def mongo_killed_during_retrain(ctx: Ctx) -> Result:
    res = Result("FerretDB kill -9 during a retrain", "at-least-once, kafka-python")
    docs = 20_000  # a snapshot read of 1-7 s on this stack (load): the kill lands inside it
    topics = service_topics(ctx, partitions=2)
    control = ctx.topics("control")[0]
    db = ctx.name("db").replace(".", "_")
    seed_inventory(ctx.stack.mongo_uri, db, docs)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        model_dir = Path(tmp) / "models"
        store = ModelStore(model_dir)
        wsettings = worker_env(ctx, model_dir, control, topics["status"], db=db, retrain_batch_size=1000)
        worker = ctx.spawn(["retrain-worker"], wsettings, "mongo-worker")
        # The start-up retrain must be over (registry written, lease released), or the command is coalesced.
        first = wait_until(
            lambda: (
                _first(status_messages(ctx.bootstrap, topics["status"]), type="retrain_finished") is not None
            ),
            180,
            0.5,
        )
        if not res.check(first, "the worker trained and published a first model at start-up"):
            return res
        serving = store.current_version()
        csettings = ctx.consume_settings(topics, model_dir)
        group = csettings["group_id"]
        consumer = ctx.spawn(["consume"], csettings, "mongo-consumer")
        res.check(warm_up(ctx.bootstrap, topics["input"], group), "the consumer is up (warm-up committed)")
        producer = PacedProducer(ctx.bootstrap, topics["input"], 300.0, 1_000_000).begin()  # stopped below
        _killed_retrain(ctx, res, wsettings, topics["status"])
        res.check(store.current_version() == serving, "CURRENT still names the serving model")
        at = committed(ctx.bootstrap, group, topics["input"])
        res.check(
            wait_advanced(ctx.bootstrap, group, topics["input"], at, 30) is not None,
            "the consumer scores on with Mongo down",
        )
        ctx.stack.start_mongo()
        back_at = time.monotonic()
        code, out = ctl(wsettings, "retrain", timeout_s=90)
        res.recovery_s = time.monotonic() - back_at
        res.check(code == 0 and "promoted" in out, f"the next retrain is promoted (exit {code})")
        fresh = store.current_version()
        res.check(fresh not in (None, serving), "CURRENT names the new version")
        time.sleep(2.0)  # updates scored by the new version
        producer.stop()
        res.check(
            wait_until(lambda: all_committed(ctx.bootstrap, group, topics["input"]), 60),
            "every offset committed",
        )
        res.check(worker.poll() is None and consumer.poll() is None, "worker and consumer never restarted")
        res.check(terminate(consumer) == 0, "consumer SIGTERM exits 0")
        terminate(worker)
    t = tally(ctx.bootstrap, topics, committed_only=False)
    res.sent, res.lost, res.duplicated = t.sent, t.lost, t.duplicated
    res.check(t.lost == 0, "0 lost")
    res.check(t.versions.get(str(serving), 0) > 0, "the first model served")
    res.check(t.versions.get(str(fresh), 0) > 0, "the new model served (hot swap, no restart)")
    return res


def _killed_retrain(ctx: Ctx, res: Result, wsettings: dict[str, Any], status_topic: str) -> None:
    """``ctl retrain``, FerretDB killed -9 once it is accepted: the failure must be reported."""
    before = len(status_messages(ctx.bootstrap, status_topic))
    retrain = ctx.spawn(["ctl", "retrain", "--timeout", "60"], wsettings | {"http_port": 0}, "mongo-ctl-1")
    ack: dict[str, Any] = {}

    def accepted() -> bool:
        ack.update(_first(status_messages(ctx.bootstrap, status_topic)[before:], status="accepted") or {})
        return bool(ack)

    if not res.check(wait_until(accepted, 60, 0.1), "the retrain was accepted"):
        return
    ctx.stack.kill_mongo()
    code = _wait(retrain, 90)
    res.check(code == 1, f"`ctl retrain` reports the failure (exit {code}, want 1)")
    status = status_messages(ctx.bootstrap, status_topic)[before:]
    failed = _first(status, type="retrain_finished", command_id=ack.get("command_id"))
    outcome = (failed or {}).get("result", {}).get("status")
    res.check(outcome == "failed", f"retrain_finished on the status topic says failed (got {outcome!r})")


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return -1
