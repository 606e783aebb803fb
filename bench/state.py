"""``python -m bench.state``: the per-item state of the ``default`` detector — memory, restore, batch cost.

* memory per item: the bytes of a partition table holding N items (arrays, measured with
  ``nbytes`` and with tracemalloc, so the index's Python objects would show), of the inventory
  seed of N items (``STATE_SEED=snapshot``), and the peak of both over a run: every item put into
  a table in batches of 2,000 distinct items, each batch's items retired from the seed as the
  flush of their states would (issue 11: <= 200 bytes per item at every point of a run);
* restore: N items' states produced to a fresh changelog topic on the local broker, as packed
  records (what StockWatch writes) and as one record per item (the layout before them, still
  restored), then restored through :class:`consumer.adapters.kafka.KafkaChangelog` (and the
  librdkafka reader) + :class:`StateStore` (what a newly assigned partition does), seconds;
* batch overhead: one 2,000-update batch through ``process_change_batch`` over a table of N items,
  against ``detector.decide_batch`` alone on the same batch, lazily as the path decides (the
  difference is the state's cost: gathering prior states, the changelog records, the events).
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from kafka import KafkaAdminClient

from bench.common import (
    BOOTSTRAP,
    Check,
    Section,
    bulk_producer,
    fresh_topics,
    kafka_kwargs,
    render,
    run_prefix,
)
from config import Settings
from consumer.adapters.kafka import KafkaChangelog, ensure_changelog
from consumer.scoring.batch import BatchConfig
from consumer.scoring.change_batch import ChangeContext, process_change_batch
from consumer.scoring.state.changelog import CHANGELOG_VALUE
from consumer.scoring.state.item_ids import id_hashes
from consumer.scoring.state.packed import pack_records
from consumer.scoring.state.record import ITEM_DTYPE
from consumer.scoring.state.seeds import SnapshotSeeds
from consumer.scoring.state.store import StateStore
from consumer.scoring.state.table import PartitionTable
from detection import parse_updates, train_detector
from detection.detector import baseline_table

BATCH = 2_000


def _docs(n: int, seed: int = 5) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    hi = rng.integers(20, 5000, n)
    stock = (hi * rng.uniform(0.2, 0.9, n)).astype(int)
    price = np.round(rng.uniform(0.5, 500, n), 2)
    return [{"item_id": f"SKU-{i:08d}", "category": f"c{i % 12}", "stock_quantity": int(stock[i]),
             "min_stock_level": int(hi[i] // 5), "max_stock_level": int(hi[i]), "price": float(price[i])}
            for i in range(n)]  # fmt: skip


def _doc_stream(n: int, chunk: int = 50_000) -> Iterator[dict[str, Any]]:
    """N inventory documents (ids as :func:`memory`'s), made a chunk at a time (not N dicts at once)."""
    for start in range(0, n, chunk):
        for doc in _docs(min(chunk, n - start), seed=start):
            doc["item_id"] = f"SKU-{start + int(doc['item_id'][4:]):08d}"
            yield doc


def memory(n: int) -> dict[str, float]:
    ids = [f"SKU-{i:08d}" for i in range(n)]
    records = np.zeros(n, CHANGELOG_VALUE)
    PartitionTable().put(
        ids[:1], records["state"][:1], records["offset"][:1]
    )  # numba's kernels load untraced
    gc.collect()
    tracemalloc.start()
    table = PartitionTable(capacity=n)
    table.load(ids, records["state"], records["offset"])
    traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    mem_table = table.nbytes
    del table
    seeds = SnapshotSeeds(_doc_stream(n), retiring=True)
    seed_bytes = seeds.nbytes / len(seeds)
    grown = PartitionTable()
    peak, retiring = seeds.nbytes, [0.0]
    for start in range(0, n, BATCH):  # the table grows batch by batch; each batch's items retire
        batch = ids[start : start + BATCH]
        grown.put(batch, records["state"][start : start + BATCH], records["offset"][start : start + BATCH])
        t = time.perf_counter()
        seeds.retire(id_hashes(batch))  # as the flush acknowledging their states does
        retiring.append(time.perf_counter() - t)
        peak = max(peak, grown.nbytes + seeds.nbytes)
    return {"items": n, "table_bytes_per_item": mem_table / n, "traced_bytes_per_item": traced / n,
            "seed_bytes_per_item": seed_bytes, "record_bytes": ITEM_DTYPE.itemsize,
            "grown_bytes_per_item": grown.nbytes / n, "peak_bytes_per_item": peak / n,
            "seed_left_bytes": seeds.nbytes, "retire_ms_mean": 1e3 * sum(retiring) / (len(retiring) - 1),
            "retire_ms_max": 1e3 * max(retiring)}  # fmt: skip


def restore(n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for layout in ("packed", "per-item"):
        out |= _restore(n, layout)
    return out


def _restore(n: int, layout: str) -> dict[str, float]:
    prefix = run_prefix()
    settings = Settings(kafka_bootstrap=BOOTSTRAP, input_topic=f"{prefix}.in", group_id=prefix)
    topic = f"{prefix}.state"
    with fresh_topics([settings.input_topic]):
        ensure_changelog(BOOTSTRAP, topic, input_topic=settings.input_topic)
        values = np.zeros(n, CHANGELOG_VALUE)
        values["state"]["stock"] = np.arange(n) % 100_000
        values["state"]["ref_price"] = 1.0  # a possible state: the restore drops others
        raw = values.view(np.uint8).reshape(n, CHANGELOG_VALUE.itemsize)
        keys = [f"SKU-{i:08d}".encode() for i in range(n)]
        producer = bulk_producer()
        started = time.perf_counter()
        if layout == "packed":
            for r in pack_records(topic, 0, keys, raw):
                producer.send(topic, key=r.key, value=r.value, partition=0)
        else:
            for i in range(n):
                producer.send(topic, key=keys[i], value=raw[i].tobytes(), partition=0)
        producer.flush(timeout=600)
        producer.close(timeout=30)
        out: dict[str, float] = {f"{layout}_produce_s": time.perf_counter() - started}
        try:
            for name, reader in _readers(settings, topic):
                store = StateStore(reader)
                try:
                    done = store.assign(0, resume_offset=n)
                finally:
                    store.close()
                out[f"{layout}_{name}_items"], out[f"{layout}_{name}_restore_s"] = done.items, done.seconds
                out[f"{layout}_{name}_records"] = done.read
        finally:
            admin = KafkaAdminClient(**kafka_kwargs(KafkaAdminClient, bootstrap_servers=BOOTSTRAP))
            admin.delete_topics([topic])
            admin.close()
    return out


def _readers(settings: Settings, topic: str) -> list[tuple[str, Any]]:
    readers: list[tuple[str, Any]] = [("kafka-python", KafkaChangelog(settings.kafka, topic))]
    try:
        from consumer.adapters.confluent.changelog import ConfluentChangelog
    except ImportError:  # the optional transport is not installed: its row is left out
        return readers
    return [*readers, ("confluent-kafka", ConfluentChangelog(settings.kafka, topic))]


def batch_overhead(n: int) -> dict[str, float]:
    docs = _docs(n)
    snapshot = parse_updates(docs)[0]
    detector = train_detector(parse_updates(docs[:20_000])[0])
    rng = np.random.default_rng(3)
    picks = rng.integers(0, n, BATCH)
    msgs = [
        {"item_id": docs[i]["item_id"], "stock_quantity": max(0, docs[i]["stock_quantity"] - 3)}
        for i in picks
    ]
    records = [_Rec(k, orjson.dumps(m)) for k, m in enumerate(msgs)]
    store = StateStore(_NoChangelog())
    base = baseline_table(snapshot)
    ids = list(base)
    store._tables[0] = table = PartitionTable(capacity=len(ids))
    table.load(ids, base.gather(np.arange(len(ids))), np.full(len(ids), -1))
    ctx = ChangeContext(store, "bench.state")
    config = BatchConfig(anomaly_topic="a", dlq_topic="d")
    batch = parse_updates(msgs)[0]
    prior = baseline_table(parse_updates([docs[i] for i in picks])[0])
    best_decide = best_parse = best_full = float("inf")
    for _ in range(7):
        t = time.perf_counter()
        detector.decide_batch(prior, batch, lazy=True)  # as process_change_batch decides
        best_decide = min(best_decide, time.perf_counter() - t)
        t = time.perf_counter()
        parse_updates([orjson.loads(r.value) for r in records])
        best_parse = min(best_parse, time.perf_counter() - t)
        t = time.perf_counter()
        process_change_batch(records, detector, ctx, config, now=datetime.now(UTC))
        best_full = min(best_full, time.perf_counter() - t)
    rest = best_full - best_decide - best_parse
    return {"table_items": n, "decide_ms": best_decide * 1e3, "parse_ms": best_parse * 1e3,
            "batch_ms": best_full * 1e3, "state_events_ms": rest * 1e3}  # fmt: skip


class _Rec:
    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset, self.timestamp = "in", 0, 10**9 + offset, None
        self.key, self.value = None, value
        self.headers: list[tuple[str, bytes]] = []


class _NoChangelog:
    topic = "bench.state"

    def read(self, partition: int, *, tick: Any = None) -> tuple[list[bytes | None], list[bytes | None]]:
        return [], []

    def end_offset(self, partition: int) -> int:
        return 0

    def truncate(self, partition: int, before: int) -> bool:
        return True

    def close(self) -> None: ...


def run(*, n: int = 1_000_000) -> Section:
    mem, res, cost = memory(n), restore(n), batch_overhead(min(n, 200_000))
    section = Section(f"Per-item state ({n:,} items)")
    rows = [
        ["state table, bytes per item (arrays)", f"{mem['table_bytes_per_item']:.1f}"],
        ["state table, bytes per item (tracemalloc)", f"{mem['traced_bytes_per_item']:.1f}"],
        [
            "state table grown by batches of 2,000 inserts, bytes per item",
            f"{mem['grown_bytes_per_item']:.1f}",
        ],
        ["inventory seed, bytes per item", f"{mem['seed_bytes_per_item']:.1f}"],
        ["state + inventory seed, peak over a run, bytes per item", f"{mem['peak_bytes_per_item']:.1f}"],
        [
            f"seed retirement of a batch of {BATCH:,} items, ms (mean / max: a repack)",
            f"{mem['retire_ms_mean']:.2f} / {mem['retire_ms_max']:.1f}",
        ],
    ]
    for layout in ("packed", "per-item"):
        for client in ("kafka-python", "confluent-kafka"):
            key = f"{layout}_{client}"
            if f"{key}_restore_s" in res:
                rows.append(
                    [
                        f"restore of {res[f'{key}_items']:,.0f} items, {layout} records ({client}), s",
                        f"{res[f'{key}_restore_s']:.2f} ({res[f'{key}_records']:,.0f} records)",
                    ]
                )
    rows += [
        [f"batch of {BATCH:,}: decide_batch alone, ms", f"{cost['decide_ms']:.1f}"],
        [f"batch of {BATCH:,}: parse_updates (detection's parser), ms", f"{cost['parse_ms']:.1f}"],
        [
            f"batch of {BATCH:,}: rest of the change path (state, events, changelog), ms",
            f"{cost['state_events_ms']:.1f}",
        ],
        [f"batch of {BATCH:,}: the whole change path, ms", f"{cost['batch_ms']:.1f}"],
    ]
    section.tables.append((["figure", "value"], rows))
    section.checks += [
        Check("state table bytes per item (issue 11: <= 200)", mem["table_bytes_per_item"], 200.0,
              higher_is_better=False, unit="B"),
        Check("state + inventory seed, peak over a run, bytes per item (issue 11: <= 200)",
              mem["peak_bytes_per_item"], 200.0, higher_is_better=False, unit="B"),
    ]  # fmt: skip
    fastest = min(v for k, v in res.items() if k.startswith("packed_") and k.endswith("_restore_s"))
    section.checks.append(Check(f"restore {n:,} items", fastest, 30.0, higher_is_better=False, unit="s"))
    section.data = {"memory": mem, "restore": res, "batch": cost}
    return section


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.state", description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    print(render(run(n=args.items)))


if __name__ == "__main__":
    main()
