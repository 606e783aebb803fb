"""Attacks on the model directory, the control topic and the status topic.

* tampered models while ``stockwatch consume`` serves: a rehashed malicious pickle in every file
  of a version, forged forest arrays, a FIFO as the scorer file — each pointed at by CURRENT;
  nothing runs, each is refused, the serving model keeps serving, and a valid version after them
  is still picked up;
* forged and crashing control messages to a live retrain worker (300- and 5,000-level nesting,
  oversize, bad and missing signatures, garbage): each is acknowledged ``rejected``, the worker
  still answers a signed ``ctl status``;
* forged acknowledgements: with no worker, a forger answers every command "promoted"; ``ctl``
  believes none of it (exit 3).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson
from kafka import KafkaConsumer, KafkaProducer

from chaos.common import CONTROL_KEY, Ctx, Result, metric, publish_model, terminate, wait_until
from chaos.kafka_io import PacedProducer, all_committed, service_topics, tally, warm_up
from chaos.worker import ctl, status_messages, worker_env
from consumer.wire.control import new_command, sign_message
from detection.scorer_arrays import load_arrays
from detection.store import CURRENT_FILE, MANIFEST_FILE, METADATA_FILE, MODEL_FILE, SCORER_FILE

OTHER_KEY = b"mallory-has-another-key-0123456789abcdef"


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def _rehash(vdir: Path, name: str, data: bytes) -> None:
    """What an attacker without the signing key does: replace a file and fix its checksum."""
    (vdir / name).write_bytes(data)
    manifest = orjson.loads((vdir / MANIFEST_FILE).read_bytes())
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (vdir / MANIFEST_FILE).write_bytes(orjson.dumps(manifest))


def _plant(model_dir: Path, staging: Path, tamper: Any) -> str:
    """A fresh valid version, copied in, tampered, then made CURRENT."""
    version = publish_model(staging, seed=int(time.time()) % 1000)
    shutil.copytree(staging / version, model_dir / version)
    tamper(model_dir / version)
    tmp = model_dir / f".{CURRENT_FILE}.tmp-chaos"
    tmp.write_text(version + "\n")
    os.replace(tmp, model_dir / CURRENT_FILE)
    return version


def _more(port: int, name: str, than: float) -> bool:
    return (metric(port, name) or 0) > than


def tampered_models(ctx: Ctx) -> Result:
    res = Result("tampered model versions", "pickles in 3 files, forged arrays, FIFO")
    topics = service_topics(ctx, partitions=2)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        model_dir, staging, marker = Path(tmp) / "models", Path(tmp) / "staging", Path(tmp) / "pwned"
        serving = publish_model(model_dir)
        settings = ctx.consume_settings(topics, model_dir)
        port = settings["http_port"]
        proc = ctx.spawn(["consume"], settings, "models")
        res.check(warm_up(ctx.bootstrap, topics["input"], settings["group_id"]), "the consumer is up")
        producer = PacedProducer(ctx.bootstrap, topics["input"], 500.0, 1_000_000).begin()  # stopped below

        def pickles(vdir: Path) -> None:
            for name in (SCORER_FILE, MODEL_FILE, METADATA_FILE):
                _rehash(vdir, name, pickle.dumps(_Evil(marker)))

        def forged(vdir: Path) -> None:
            arrays = {
                k: np.array(v, copy=True) for k, v in load_arrays((vdir / SCORER_FILE).read_bytes()).items()
            }
            arrays["nodes"]["link"][0] = (
                len(arrays["nodes"]) << int(arrays["shift"])
            ) | 0  # a child outside the forest
            buf = io.BytesIO()
            cast(Any, np.savez)(buf, **arrays)  # written without the store's checks, as an attacker would
            _rehash(vdir, SCORER_FILE, buf.getvalue())

        def fifo(vdir: Path) -> None:
            os.remove(vdir / SCORER_FILE)
            os.mkfifo(vdir / SCORER_FILE)

        for name, tamper in (("pickles", pickles), ("forged arrays", forged), ("FIFO", fifo)):
            before = metric(port, "stockwatch_model_refusals_total") or 0
            _plant(model_dir, staging, tamper)
            refused = wait_until(partial(_more, port, "stockwatch_model_refusals_total", before), 30)
            res.check(refused, f"{name}: refused (stockwatch_model_refusals_total)")
        good = publish_model(model_dir, seed=7)
        swapped = wait_until(lambda: metric(port, "stockwatch_model_swaps_total") == 2, 30)
        res.check(swapped, "a valid version after the attacks is loaded (the watcher is not stalled)")
        time.sleep(1.0)
        producer.stop()
        res.check(
            wait_until(lambda: all_committed(ctx.bootstrap, settings["group_id"], topics["input"]), 60),
            "every offset committed",
        )
        res.check(proc.poll() is None and terminate(proc) == 0, "the consumer kept running; SIGTERM exits 0")
        res.check(not marker.exists(), "no pickle ran (no marker directory)")
    t = tally(ctx.bootstrap, topics, committed_only=False)
    res.sent, res.lost, res.duplicated = t.sent, t.lost, t.duplicated
    res.check(t.lost == 0, "0 lost")
    res.check(set(t.versions) == {serving, good}, f"only the valid versions scored ({sorted(t.versions)})")
    return res


def _hostile_commands() -> list[tuple[str, bytes]]:
    deep = b'{"command":"status","command_id":"deep-300","issued_at":"2026-11-25T18:00:00Z","args":'
    signed = new_command("status", OTHER_KEY).to_json()
    return [
        ("300-level args, any signature", deep + b'{"a":' * 300 + b"1" + b"}" * 300 + b',"signature":"00"}'),
        ("5,000-level nesting", b"[" * 5000 + b"]" * 5000),
        (
            "20 KB command",
            orjson.dumps({"command": "status", "command_id": "big", "args": {"x": "y" * 20_000}}),
        ),
        ("signed with another key", signed),
        ("unsigned", orjson.dumps({k: v for k, v in orjson.loads(signed).items() if k != "signature"})),
        ("not JSON", b"\x00\xff\xfe garbage"),
        ("truncated", signed[:40]),
        ("empty", b""),
        ("JSON array", b"[1, 2]"),
    ]


def control_attacks(ctx: Ctx) -> list[Result]:
    return [_control(ctx), _forged_acks(ctx)]


def _control(ctx: Ctx) -> Result:
    attacks = _hostile_commands()
    res = Result("forged and crashing commands", f"{len(attacks)} kinds to a live worker")
    status, control = ctx.topics("status", "control")
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        model_dir = Path(tmp) / "models"
        publish_model(model_dir)  # no start-up retrain
        wsettings = worker_env(ctx, model_dir, control, status, db=ctx.name("db").replace(".", "_"))
        worker = ctx.spawn(["retrain-worker"], wsettings, "control-worker")
        res.check(ctl(wsettings, "status", timeout_s=60)[0] == 0, "the worker answers `ctl status`")
        producer = KafkaProducer(bootstrap_servers=ctx.bootstrap, acks="all", max_request_size=1 << 20)
        for _, value in attacks:
            producer.send(control, value=value)
        producer.flush(timeout=30)
        producer.close(timeout=10)

        def rejected() -> list[dict[str, Any]]:
            return [m for m in status_messages(ctx.bootstrap, status) if m.get("status") == "rejected"]

        wait_until(lambda: len(rejected()) >= len(attacks), 60, 0.5)
        acks = rejected()
        res.sent, res.lost = len(attacks), max(0, len(attacks) - len(acks))
        res.check(len(acks) == len(attacks), f"each acknowledged rejected ({len(acks)} of {len(attacks)})")
        res.check(all(m.get("signature") for m in acks), "the rejections are signed")
        res.check(worker.poll() is None, "the worker kept running")
        code, _ = ctl(wsettings, "status", timeout_s=60)
        res.check(code == 0, "the worker still answers a signed `ctl status`")
        terminate(worker)
    return res


def _forged_acks(ctx: Ctx) -> Result:
    res = Result("forged acknowledgements", "no worker; unsigned, other key, foreign digest")
    status, control = ctx.topics("status", "control")
    settings = worker_env(ctx, Path(tempfile.gettempdir()) / "chaos-no-models", control, status, db="unused")
    forged = threading.Event()

    def forger() -> None:
        reader = KafkaConsumer(
            control, bootstrap_servers=ctx.bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        writer = KafkaProducer(bootstrap_servers=ctx.bootstrap)
        deadline = time.monotonic() + 30
        try:
            while not forged.is_set() and time.monotonic() < deadline:
                for recs in reader.poll(timeout_ms=200).values():
                    for r in recs:
                        cid = orjson.loads(r.value).get("command_id")
                        ack = {
                            "type": "command_ack",
                            "command_id": cid,
                            "command": "retrain",
                            "worker": "mallory",
                        }
                        done = ack | {"status": "done", "result": {"status": "promoted", "version": "evil"}}
                        for msg in (
                            done,
                            sign_message(done, OTHER_KEY),
                            sign_message(
                                ack | {"status": "rejected", "digest": "0" * 64}, CONTROL_KEY.encode()
                            ),
                        ):
                            writer.send(status, orjson.dumps(msg))
                        writer.flush(10)
                        forged.set()
        finally:
            writer.close(timeout=10)
            reader.close()

    thread = threading.Thread(target=forger, daemon=True)
    thread.start()
    code, out = ctl(settings, "retrain", timeout_s=10)
    thread.join(30)
    res.sent = 3 if forged.is_set() else 0
    res.check(forged.is_set(), "the forger answered the command")
    res.check(
        code == 3 and "promoted" not in out and "evil" not in out,
        f"`ctl retrain` believed none of it (exit {code}, want 3)",
    )
    return res
