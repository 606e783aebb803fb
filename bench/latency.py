"""Latency: produce -> anomaly received, at fixed offered loads (10 % and 50 % of pipeline (b)).

Per load: fresh topics, ``stockwatch consume`` (at-least-once) as a subprocess, a paced producer
process, and a reader of the anomaly topic in this process. Latency of an anomaly = the reader's
receive time minus the input record's timestamp (CreateTime: set by the producer when it called
``send``; the anomaly event carries it in ``source.timestamp``). Same machine, same clock; ms
resolution. The first ``WARMUP_S`` seconds of each load are not counted.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    OUT_DIR,
    Check,
    Section,
    fmt,
    fresh_topics,
    run_prefix,
    start_consume,
    stop_process,
    train_bench_model,
)
from bench.stream import FloorReader, OutputReader, start_paced_producer, wait_until_scoring
from detection import ModelStore

WARMUP_S = 2.0
DEFAULT_B_RATE = 20_000.0  # used when the pipeline benchmark did not run first


def one_load(rate: float, seconds: float, model_dir: Path, label: str, client: str) -> dict[str, Any]:
    prefix = run_prefix()
    topics = [f"{prefix}.updates", f"{prefix}.anomalies", f"{prefix}.dlq", f"{prefix}.status"]
    with fresh_topics(topics):
        settings = {
            "input_topic": topics[0],
            "anomaly_topic": topics[1],
            "dlq_topic": topics[2],
            "status_topic": topics[3],
            "group_id": f"{prefix}.latency",
            "model_dir": model_dir,
            "create_missing_topics": "false",
            "kafka_client": client,
        }
        proc = start_consume(settings, OUT_DIR / "logs" / f"latency-{label}.log")
        reader = OutputReader(topics[1]).start()
        floor = FloorReader(topics[0])  # the same input read by a bare consumer (own process): the floor
        try:
            wait_until_scoring(reader, topics[0], f"latency-{label}.log")
            began_ms = time.time() * 1000.0
            producer, result_q = start_paced_producer(topics[0], rate, seconds)
            produced = result_q.get(timeout=seconds * 3 + 120)
            producer.join(30)
            reader.wait_idle(2.0, 60.0)
        finally:
            reader.stop()
            floor_ts, floor_lat = floor.stop()
            code = stop_process(proc)
    start_ms = began_ms + WARMUP_S * 1000.0
    lat = np.array(
        [
            r.recv_ms - r.event["source"]["timestamp"]
            for r in reader.records
            if r.event["source"]["timestamp"] >= start_ms
        ]
    )
    if lat.size == 0:
        raise RuntimeError(f"no anomaly received at {label}")
    p50, p99, p999 = np.percentile(lat, [50, 99, 99.9])
    bare = floor_lat[floor_ts >= start_ms]
    f50, f99, f999 = np.percentile(bare, [50, 99, 99.9]) if bare.size else (np.nan, np.nan, np.nan)
    return {
        "label": label,
        "client": client,
        "generator": produced["client"],
        "offered_rate": rate,
        "achieved_rate": produced["rate"],
        "producer_max_behind_s": produced["max_behind_s"],
        "sent": produced["sent"],
        "samples": int(lat.size),
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "p999_ms": float(p999),
        "max_ms": float(lat.max()),
        "bare_samples": int(bare.size),
        "bare_p50_ms": float(f50),
        "bare_p99_ms": float(f99),
        "bare_p999_ms": float(f999),
        "consumer_exit": code,
    }


CLIENTS = ("kafka-python", "confluent-kafka")  # both at the same offered loads, shares of the default's (b)


def _b_rate(pipeline: dict[str, Any] | None) -> tuple[float, str]:
    """(b), which the loads are shares of: this run's pipeline, else .bench/pipeline.json, else a default."""
    source = "pipeline of this run"
    if not pipeline:
        saved = OUT_DIR / "pipeline.json"
        pipeline, source = (
            (json.loads(saved.read_text()), ".bench/pipeline.json") if saved.exists() else ({}, "")
        )
    rate = (pipeline.get("b") or {}).get("events_per_s")
    if not rate:
        return DEFAULT_B_RATE, "a default (pipeline did not run)"
    return float(rate), source


def run(*, pipeline: dict[str, Any] | None = None, seconds: float = 30.0) -> Section:
    b_rate, source = _b_rate(pipeline)
    section = Section(title=f"3. Latency, produce -> anomaly received ({seconds:.0f} s per load)")
    results: list[tuple[str, int, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="stockwatch-bench-") as tmp:
        model_dir = Path(tmp) / "models"
        ModelStore(model_dir).publish(train_bench_model())
        for client in CLIENTS:
            for pct in (10, 50):
                label = f"{pct}pct-{client}"
                r = one_load(b_rate * pct / 100, seconds, model_dir, label, client)
                print(
                    f"  {client} {pct}%: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms "
                    f"({r['samples']} samples)",
                    flush=True,
                )
                results.append((client, pct, r))
    section.tables.append(
        (
            [
                "transport",
                "load",
                "offered ev/s",
                "achieved ev/s",
                "anomalies timed",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "bare reader p50 / p99 / p99.9 ms",
            ],
            [
                [
                    client,
                    f"{pct} % of (b)",
                    fmt(r["offered_rate"]),
                    fmt(r["achieved_rate"]),
                    f"{r['samples']:,}",
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    f"{r['p999_ms']:.1f}",
                    f"{r['max_ms']:.0f}",
                    f"{r['bare_p50_ms']:.1f} / {r['bare_p99_ms']:.1f} / {r['bare_p999_ms']:.1f}",
                ]
                for client, pct, r in results
            ],
        )
    )
    for client, pct, r in results:
        if pct == 50:
            section.checks.append(Check(f"p99 at 50 % load, {client}", r["p99_ms"], 50, False, " ms"))
    generator = results[0][2]["generator"] if results else "?"
    section.notes += [
        f"loads as a share of (b) = {b_rate:,.0f} events/s ({source}), the same for both "
        "transports; "
        "at-least-once, `stockwatch consume` subprocess, default settings (max_poll_records 2000, "
        "poll timeout 100 ms, producer linger 5 ms)",
        f"load generator: a paced {generator} producer in its own process (acks=1, linger 1 ms)",
        "latency = reader receive time - input CreateTime (ms resolution); p99.9 over few samples is indicative",
        "bare reader: a plain consumer of the input topic in its own process, in the same run (producer -> "
        "broker -> client only), the floor this machine gives at that moment",
    ]
    section.data = {"b_rate": b_rate, "b_rate_source": source, "loads": [r for _, _, r in results]}
    return section
