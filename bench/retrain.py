"""Retrain: wall time and peak RSS of one retrain from 10k / 100k / 1M Mongo documents.

Inventories are seeded into ``stockwatch_bench.inventory_<n>`` with ``insert_many`` in batches of
20,000 and reused by later runs when the collection already holds exactly ``n`` documents (the
seed time is reported, or "reused"). Each size runs in its own subprocess, which reports its own
peak RSS (``VmHWM``; a child's rusage would include the parent pages it shared before ``exec``). The steps are the retrain worker's:

* read — ``WorkerMongo.iter_inventory`` (projection, cursor batches of 5,000 fetched two ahead by a
  helper thread) into
  ``consumer.retraining.snapshot.collect`` (the worker's streamed feature matrix);
* fit — ``detection.train_on_features`` (scaler, IsolationForest ``contamination="auto"``,
  compile, training scores), minus the threshold step;
* threshold — ``fast_offset`` (timed inside ``train_on_features``);
* validate — ``consumer.retraining.gate.evaluate`` on the snapshot and a 10,000-row sample;
* publish — ``ModelStore.publish`` (files, checksums, fsync, CURRENT switch).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.common import MONGO_URI, REPO, Check, Section, fmt

DB = "stockwatch_bench"
SEED_BATCH = 20_000


def _docs(start: int, n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(start)
    lo = rng.integers(5, 60, n)
    hi = lo + rng.integers(50, 400, n)
    stock = rng.integers(0, 500, n)
    price = np.round(rng.lognormal(2.5, 0.8, n), 2)
    out = []
    for k, (s, a, b, p) in enumerate(
        zip(stock.tolist(), lo.tolist(), hi.tolist(), price.tolist(), strict=True)
    ):
        i = start + k
        out.append({"_id": f"sku-{i:07d}", "item_id": f"sku-{i:07d}", "name": f"item {i}", "warehouse": f"wh-{i % 7}",
                    "stock_quantity": s, "min_stock_level": a, "max_stock_level": b, "price": p})  # fmt: skip
    return out


def seed(n: int) -> dict[str, Any]:
    """Make ``inventory_<n>`` hold ``n`` documents (reused when it already does)."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(MONGO_URI, serverSelectionTimeoutMS=10_000)
    try:
        col = client[DB][f"inventory_{n}"]
        if col.estimated_document_count() == n and col.count_documents({}) == n:
            return {"collection": col.name, "reused": True, "seconds": 0.0}
        col.drop()
        started = time.perf_counter()
        for start in range(0, n, SEED_BATCH):
            col.insert_many(_docs(start, min(SEED_BATCH, n - start)), ordered=False)
        return {"collection": col.name, "reused": False, "seconds": time.perf_counter() - started}
    finally:
        client.close()


# ------------------------------------------------------------------------------- child side


def _server_cpu_s() -> float | None:
    """CPU seconds used so far by the local FerretDB (``.stack/ferretdb/ferretdb.pid``), if any."""
    try:
        pid = int((REPO / ".stack" / "ferretdb" / "ferretdb.pid").read_text().strip())
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _own_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(collection: str, model_dir: Path) -> dict[str, Any]:
    """One retrain, step by step (runs in the subprocess)."""
    import detection.model as model_module
    from consumer.adapters.mongo import WorkerMongo
    from consumer.retraining.gate import GateConfig, evaluate
    from consumer.retraining.snapshot import collect
    from detection import ForestParams, ModelStore, train_on_features

    times: dict[str, float] = {}
    server_before, own_before = _server_cpu_s(), _own_cpu_s()
    began = time.perf_counter()
    db = WorkerMongo(MONGO_URI, DB, inventory=collection)
    docs = db.iter_inventory(batch_size=5000)
    features = collect(docs, chunk_size=5000).features
    reader = "consumer.retraining.snapshot.collect"
    db.close()
    times["read"] = time.perf_counter() - began
    server_after = _server_cpu_s()
    read_cpu = {
        "reader_cpu_s": _own_cpu_s() - own_before,
        "server_cpu_s": None
        if server_before is None or server_after is None
        else server_after - server_before,
    }

    original = vars(model_module)["fast_offset"]

    def timed_offset(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            times["threshold"] = time.perf_counter() - started

    vars(model_module)["fast_offset"] = timed_offset  # the name train_on_features calls
    started = time.perf_counter()
    model = train_on_features(features, ForestParams(contamination=0.1))
    times["fit"] = time.perf_counter() - started - times["threshold"]

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    sample = features[np.sort(rng.choice(len(features), size=min(10_000, len(features)), replace=False))]
    gate = evaluate(model, features, sample, current=None, config=GateConfig(contamination=0.1))
    times["validate"] = time.perf_counter() - started

    started = time.perf_counter()
    version = ModelStore(model_dir).publish(model)
    times["publish"] = time.perf_counter() - started
    times["total"] = time.perf_counter() - began
    return {"items": int(features.shape[0]), "reader": reader, "gate_passed": gate.passed, "version": version,
            "seconds": times, "read_cpu": read_cpu, "peak_rss_mb": _vm_hwm_mb()}  # fmt: skip


def _vm_hwm_mb() -> float:
    """This process's peak RSS (VmHWM). Unlike the rusage of a child, it is not inflated by the
    parent's pages the child shared between fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


# ------------------------------------------------------------------------------- parent side


def one_size(n: int, seeded: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="stockwatch-bench-") as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.retrain", "--child", seeded["collection"], "--model-dir", tmp],
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"retrain child for {n} items exited {proc.returncode}")
    result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    result["n"] = n
    result["seed"] = seeded
    return result


def _cpu(c: dict[str, float | None]) -> str:
    server = "?" if c["server_cpu_s"] is None else f"{c['server_cpu_s']:.1f}"
    return f"{server} / {c['reader_cpu_s']:.1f}"


def run(*, sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)) -> Section:
    section = Section(title="5. Retrain from Mongo (FerretDB v1, SQLite backend)")
    results = []
    for n in sizes:
        seeded = seed(n)
        how = "reused" if seeded["reused"] else f"seeded in {seeded['seconds']:.1f} s"
        print(f"  {n:,} documents: {how}", flush=True)
        r = one_size(n, seeded)
        print(f"  {n:,}: {r['seconds']['total']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
        results.append(r)
    steps = ("read", "fit", "threshold", "validate", "publish")
    section.tables.append(
        (
            [
                "documents",
                "total s",
                *[f"{s} s" for s in steps],
                "read docs/s",
                "read CPU s: FerretDB / reader",
                "peak RSS MB",
                "seed",
            ],
            [
                [
                    f"{r['n']:,}",
                    f"{r['seconds']['total']:.2f}",
                    *[f"{r['seconds'][s]:.2f}" for s in steps],
                    fmt(r["n"] / r["seconds"]["read"]),
                    _cpu(r["read_cpu"]),
                    f"{r['peak_rss_mb']:.0f}",
                    "reused" if r["seed"]["reused"] else f"{r['seed']['seconds']:.0f} s",
                ]
                for r in results
            ],
        )
    )
    big = [r for r in results if r["n"] >= 1_000_000]
    if big:
        section.checks += [
            Check("1M retrain wall time (read included)", big[0]["seconds"]["total"], 30, False, " s"),
            Check("1M retrain peak RSS", big[0]["peak_rss_mb"], 1024, False, " MB"),
        ]
    section.notes += [
        f"reader: {results[0]['reader']}; each size in its own subprocess (peak RSS = its VmHWM, "
        "includes the interpreter and numpy, sklearn, numba, pymongo: ~260 MB at 10k documents)",
        f"collections {DB}.inventory_<n> are kept and reused when their count matches",
    ]
    section.data = {"results": results}
    return section


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    args = parser.parse_args()
    print(orjson.dumps(child(args.child, args.model_dir)).decode())
