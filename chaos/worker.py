"""The retrain worker's side of the scenarios: its settings, ``stockwatch ctl``, Mongo seeding, the status topic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pymongo import MongoClient

from chaos.common import CONTROL_KEY, Ctx
from chaos.kafka_io import read_all
from chaos.stack import REPO


def worker_env(
    ctx: Ctx, model_dir: Path, control: str, status: str, *, db: str, **extra: Any
) -> dict[str, Any]:
    """Settings of a ``stockwatch retrain-worker`` (and of ``ctl``) on this stack: one attempt per
    retrain (a Mongo outage fails it at once), no cooldown."""
    values: dict[str, Any] = {
        "kafka_bootstrap": ctx.bootstrap,
        "mongo_uri": ctx.stack.mongo_uri,
        "mongo_db": db,
        "control_topic": control,
        "status_topic": status,
        "control_group_id": control + ".workers",
        "control_key": CONTROL_KEY,
        "model_dir": model_dir,
        "http_port": 0,
        "http_host": "127.0.0.1",
        "create_missing_topics": "false",
        "session_timeout_ms": 6000,
        "worker_mongo_timeout_s": 3,
        "retrain_max_attempts": 1,
        "retrain_backoff_s": 0,
        "retrain_cooldown_s": 0,
    }
    values.update(extra)
    return values


def ctl(settings: dict[str, Any], *args: str, timeout_s: float) -> tuple[int, str]:
    """``stockwatch ctl <args>`` with the worker's settings: (exit status or -1 if it hung, stdout)."""
    skip = ("http_port", "http_host")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")}
    env.update({f"STOCKWATCH_{k.upper()}": str(v) for k, v in settings.items() if k not in skip})
    env["PYTHONPATH"] = str(REPO)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "consumer.cli", "ctl", *args, "--timeout", str(timeout_s)],
            cwd=REPO, env=env, capture_output=True, timeout=timeout_s + 30, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return -1, ""
    return done.returncode, done.stdout.decode("utf-8", "replace")


def seed_inventory(mongo_uri: str, db: str, n: int, *, seed: int = 5) -> None:
    """``n`` plausible inventory documents in ``db.inventory`` (batches of 5,000)."""
    rng = np.random.default_rng(seed)
    lo = rng.integers(20, 80, n)
    hi = lo + rng.integers(100, 300, n)
    stock = rng.integers(lo, hi)
    price = np.round(rng.uniform(2.0, 60.0, n), 2)
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    try:
        coll = client[db]["inventory"]
        docs = [
            {"_id": f"sku-{i}", "stock_quantity": s, "min_stock_level": a, "max_stock_level": b, "price": p}
            for i, (s, a, b, p) in enumerate(
                zip(stock.tolist(), lo.tolist(), hi.tolist(), price.tolist(), strict=True)
            )
        ]
        for start in range(0, n, 5000):
            coll.insert_many(docs[start : start + 5000], ordered=False)
    finally:
        client.close()


def status_messages(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Everything on the status topic so far, decoded (undecodable records skipped)."""
    out = []
    for r in read_all(bootstrap, topic, committed_only=False):
        try:
            out.append(orjson.loads(r.value))
        except orjson.JSONDecodeError:
            continue
    return out
