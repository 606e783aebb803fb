"""Hot swap: 10 model versions published while the service streams, in exactly-once mode.

``stockwatch consume`` runs as a subprocess with ``delivery=exactly-once`` and ``decisions_topic``
set, so every input record yields exactly one decision event (anomaly or not) in the same
transaction as its offset commit. A paced producer offers a fixed load; meanwhile this process
publishes 10 freshly trained models with ``ModelStore.publish`` (the service's watcher polls the
store every 0.25 s). A read_committed reader of the decisions topic then checks that every input
offset has exactly one decision, and measures the longest gap between consecutive decisions
(by their record timestamps, i.e. when the service produced them) while input flowed.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer, TopicPartition

from bench.common import (
    BOOTSTRAP,
    OUT_DIR,
    Check,
    Section,
    fresh_topics,
    kafka_kwargs,
    run_prefix,
    start_consume,
    stop_process,
    train_bench_model,
)
from bench.stream import OutputReader, start_paced_producer, wait_until_scoring
from detection import ModelStore

SWAP_EVERY_S = 2.0
LEAD_S = 3.0  # streaming before the first and after the last swap
WARMUP_S = 1.0  # gaps in the first second of output are not counted
CLIENTS = ("kafka-python", "confluent-kafka")


def _end_offset(topic: str) -> int:
    consumer = KafkaConsumer(
        **kafka_kwargs(
            KafkaConsumer, bootstrap_servers=BOOTSTRAP, group_id=None, isolation_level="read_committed"
        )
    )
    try:
        tp = TopicPartition(topic, 0)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def one_client(client: str, *, swaps: int, rate: float) -> dict[str, Any]:
    """One streaming run with ``swaps`` publications, the service on ``client``'s transport."""
    prefix = run_prefix()
    topics = [f"{prefix}.{t}" for t in ("updates", "anomalies", "dlq", "status", "decisions")]
    seconds = swaps * SWAP_EVERY_S + 2 * LEAD_S
    models = [train_bench_model(seed=100 + k) for k in range(swaps + 1)]  # fresh: trained in this run
    with tempfile.TemporaryDirectory(prefix="stockwatch-bench-") as tmp, fresh_topics(topics):
        store = ModelStore(Path(tmp) / "models", keep=swaps + 2)
        first_version = store.publish(models[0])
        settings = {
            "input_topic": topics[0],
            "anomaly_topic": topics[1],
            "dlq_topic": topics[2],
            "status_topic": topics[3],
            "decisions_topic": topics[4],
            "group_id": f"{prefix}.hotswap",
            "transactional_id": f"{prefix}.hotswap.tx",
            "delivery": "exactly-once",
            "model_dir": store.root,
            "model_poll_interval_s": 0.25,
            "create_missing_topics": "false",
            "kafka_client": client,
        }
        proc = start_consume(settings, OUT_DIR / "logs" / f"hotswap-{client}.log")
        reader = OutputReader(topics[4], read_committed=True).start()
        published: list[tuple[float, str]] = []
        try:
            wait_until_scoring(reader, topics[0], f"hotswap-{client}.log")
            producer, result_q = start_paced_producer(topics[0], rate, seconds)
            time.sleep(LEAD_S)
            for model in models[1:]:
                began = time.monotonic()
                published.append((time.time() * 1000.0, store.publish(model)))
                time.sleep(max(0.0, SWAP_EVERY_S - (time.monotonic() - began)))
            produced = result_q.get(timeout=seconds * 3 + 120)
            producer.join(30)
            total_in = _end_offset(topics[0])
            reader.wait_for(total_in, 60.0)
            reader.wait_idle(1.0, 10.0)
        finally:
            reader.stop()
            code = stop_process(proc)
    offsets = Counter(r.event["source"]["offset"] for r in reader.records)
    lost = sum(1 for o in range(total_in) if o not in offsets)
    duplicated = sum(c - 1 for c in offsets.values() if c > 1)
    # while input flows: from the first to the last decision on a paced update (probes excluded)
    paced = [i for i, r in enumerate(reader.records) if str(r.event.get("event_id", "")).startswith("e-")]
    flowing = reader.records[paced[0] : paced[-1] + 1] if paced else []  # offset order
    if flowing:  # the first WARMUP_S are not counted (connections, first transaction, metadata)
        flowing = [r for r in flowing if r.timestamp_ms >= flowing[0].timestamp_ms + WARMUP_S * 1000]
    ts = np.array([r.timestamp_ms for r in flowing], dtype=np.int64)
    gaps = np.diff(ts) if ts.size > 1 else np.zeros(1, dtype=np.int64)
    sent = np.array([r.event["source"]["timestamp"] for r in flowing], dtype=np.int64)
    input_gap = int(np.diff(sent).max()) if sent.size > 1 else 0  # the load generator's own longest pause
    longest = int(gaps.max())
    swap_gaps = [
        int(b.timestamp_ms - a.timestamp_ms)
        for a, b in itertools.pairwise(flowing)
        if a.event["model_version"] != b.event["model_version"]
    ]
    order = np.argsort(gaps)[::-1][:10]
    top_gaps = [
        {"ms": int(gaps[i]), "at_s": (flowing[i].timestamp_ms - flowing[0].timestamp_ms) / 1000.0,
         "at_swap": flowing[i].event["model_version"] != flowing[i + 1].event["model_version"]}
        for i in order.tolist() if i + 1 < len(flowing)
    ]  # fmt: skip
    versions = sorted({r.event["model_version"] for r in reader.records})
    expected = {first_version, *(v for _, v in published)}
    return {
        "client": client,
        "rate": rate,
        "seconds": seconds,
        "produced": produced,
        "input_records": total_in,
        "decisions": len(reader.records),
        "distinct_offsets": len(offsets),
        "lost": lost,
        "duplicated": duplicated,
        "longest_gap_ms": longest,
        "longest_input_gap_ms": input_gap,
        "swap_gaps_ms": swap_gaps,
        "top_gaps": top_gaps,
        "gap_percentiles_ms": {str(p): float(np.percentile(gaps, p)) for p in (50, 99, 99.9)},
        "versions_seen": versions,
        "versions_expected": len(expected),
        "published": published,
        "consumer_exit": code,
    }


def run(*, swaps: int = 10, rate: float = 5_000.0, clients: tuple[str, ...] = CLIENTS) -> Section:
    section = Section(title=f"4. Hot swap: {swaps} model versions at {rate:,.0f} events/s, exactly-once")
    results = [one_client(client, swaps=swaps, rate=rate) for client in clients]
    section.tables.append(
        (
            [
                "transport",
                "input records",
                "decisions read",
                "distinct offsets",
                "lost",
                "duplicated",
                "versions seen",
                "longest gap",
                "longest gap at a swap",
                "p99 gap",
                "longest input gap",
            ],
            [
                [
                    r["client"],
                    f"{r['input_records']:,}",
                    f"{r['decisions']:,}",
                    f"{r['distinct_offsets']:,}",
                    str(r["lost"]),
                    str(r["duplicated"]),
                    f"{len(r['versions_seen'])} of {r['versions_expected']}",
                    f"{r['longest_gap_ms']} ms",
                    f"{max(r['swap_gaps_ms'], default=0)} ms",
                    f"{r['gap_percentiles_ms']['99']:.0f} ms",
                    f"{r['longest_input_gap_ms']} ms",
                ]
                for r in results
            ],
        )
    )
    for r in results:
        c = r["client"]
        section.checks += [
            Check(f"longest output gap while input flows, {c}", r["longest_gap_ms"], 20, False, " ms"),
            Check(f"lost input records, {c}", r["lost"], 0, False),
            Check(f"duplicated decisions, {c}", r["duplicated"], 0, False),
        ]
        if len(r["versions_seen"]) != r["versions_expected"]:
            section.notes.append(
                f"{c}: versions seen {len(r['versions_seen'])}, published {r['versions_expected']} "
                "(a swap may coalesce)"
            )
    section.notes += [
        f"offered {rate:,.0f} events/s for {results[0]['seconds']:.0f} s per transport (achieved "
        + ", ".join(f"{r['produced']['rate']:,.0f}/s" for r in results)
        + f"); a model published every {SWAP_EVERY_S:.0f} s; the watcher polls the store every 0.25 s",
        "decisions_topic is set so every input offset has exactly one decision (read_committed reader); "
        "gaps are between record timestamps of consecutive decisions (when the service produced them), "
        f"ms resolution, from {WARMUP_S:.0f} s after the first decision on; the input gap is the same "
        "between their inputs' CreateTime (a pause of the load generator itself)",
    ]
    section.data = {"runs": results}
    return section
