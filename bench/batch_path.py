"""``python -m bench.batch_path``: one poll batch's pure work, ``seed`` against ``default``, in process.

The pipeline's updates (:func:`bench.common.encoded_updates`: 50,000 items, 3 % planted) as
in-memory records, in batches of 2,000 (the service's ``max_poll_records``), through
:func:`consumer.scoring.batch.process_batch` (the seed path) and
:func:`consumer.scoring.change_batch.process_change_batch` (the ``default`` detector with a state
store already holding every item, as after a restore; each batch's changes are applied and
settled as the loop does). No Kafka: this is the per-batch cost the detector choice adds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from bench.common import ITEMS, Section, encoded_updates, fmt, render, train_bench_model
from consumer.scoring.batch import BatchConfig, BatchResult, process_batch
from consumer.scoring.change_batch import ChangeContext, process_change_batch
from consumer.scoring.episode_batch import EpisodeContext
from consumer.scoring.state.store import StateStore
from consumer.scoring.state.table import PartitionTable
from consumer.scoring.wiring import settle_heap
from detection import ChangeDetector, parse_updates, train_detector
from detection.detector import baseline_table

BATCH = 2_000


@dataclass(frozen=True, slots=True)
class Rec:
    """An in-memory input record (the fields :class:`consumer.ports.SourceRecord` names)."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class NoChangelog:
    """A changelog with nothing in it (the table is loaded directly)."""

    topic = "bench.state"

    def read(self, partition: int, *, tick: Any = None) -> tuple[list[bytes | None], list[bytes | None]]:
        return [], []

    def end_offset(self, partition: int) -> int:
        return 0

    def truncate(self, partition: int, before: int) -> bool:
        return True

    def close(self) -> None: ...


def train_bench_detector() -> ChangeDetector:
    """The ``default`` detector trained on the bench items' first states (updates 0 .. 49,999)."""
    snapshot = parse_updates([orjson.loads(v) for _, v in encoded_updates(0, ITEMS, planted=False)])[0]
    return train_detector(snapshot)


def warm_context(start: int = 0) -> ChangeContext:
    """A state store holding every bench item (its state after updates ``start`` .. ``start+49,999``)."""
    snapshot = parse_updates([orjson.loads(v) for _, v in encoded_updates(start, ITEMS, planted=False)])[0]
    base = baseline_table(snapshot)
    ids = list(base)
    store = StateStore(NoChangelog())
    table = PartitionTable(capacity=len(ids))
    table.load(ids, base.gather(np.arange(len(ids))), np.full(len(ids), -1))
    store._tables[0] = table  # as StateStore.assign leaves it after a restore
    return ChangeContext(store, "bench.state")


def batches(start: int, n: int, skew: float = 0.0) -> list[list[Rec]]:
    """Updates ``start`` .. ``start+n-1`` as records of one partition, in poll batches."""
    recs = [Rec("in", 0, start + k, 1_700_000_000_000 + k, key, value, [])
            for k, (key, value) in enumerate(encoded_updates(start, n, skew=skew))]  # fmt: skip
    return [recs[a : a + BATCH] for a in range(0, n, BATCH)]


def run_change(
    recs: list[Rec], detector: ChangeDetector, ctx: ChangeContext, config: BatchConfig
) -> BatchResult:
    """One batch the way the loop runs it: decide, apply the changes (handed to the sink), settle."""
    result = process_change_batch(recs, detector, ctx, config, now=datetime.now(UTC))
    ctx.published(result)
    ctx.acknowledged(result)
    return result


def measure(
    n: int = 200_000, rounds: int = 3, *, episodes: bool = False, skew: float = 0.0
) -> dict[str, Any]:
    """Median ms per batch of each path over ``rounds`` interleaved passes of the same batches
    (``episodes``: alert_mode "episodes", the service's default; ``skew``: the stream's Zipf s)."""
    seed_model, detector = train_bench_model(), train_bench_detector()
    config = BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq")
    work = batches(ITEMS, n, skew)

    def context() -> ChangeContext:
        warm = warm_context()
        return ChangeContext(
            warm.store, warm.changelog_topic, episodes=EpisodeContext() if episodes else None
        )

    ctx = context()
    seed_ms: list[float] = []
    default_ms: list[float] = []
    counts = {"seed": 0, "default": 0}
    run_change(work[0], detector, context(), config)  # compile / warm caches outside the timing
    process_batch(work[0], seed_model, config, now=datetime.now(UTC))
    settle_heap()  # as `stockwatch consume` before its loop
    for r in range(rounds):
        if r:
            ctx = context()  # each pass meets the same states
        for recs in work:
            t0 = time.perf_counter()
            a = process_batch(recs, seed_model, config, now=datetime.now(UTC))
            t1 = time.perf_counter()
            b = run_change(recs, detector, ctx, config)
            t2 = time.perf_counter()
            seed_ms.append((t1 - t0) * 1e3)
            default_ms.append((t2 - t1) * 1e3)
            if r == 0:
                counts["seed"] += a.n_anomalies
                counts["default"] += b.n_anomalies
    seed, default = statistics.median(seed_ms), statistics.median(default_ms)
    return {"updates": n, "batch": BATCH, "seed_ms": seed, "default_ms": default, "ratio": default / seed,
            "seed_anomalies": counts["seed"], "default_anomalies": counts["default"],
            "seed_per_s": BATCH / seed * 1e3, "default_per_s": BATCH / default * 1e3}  # fmt: skip


def table_rows(m: dict[str, Any]) -> list[list[str]]:
    """Rows of the pipeline section's in-process table."""
    return [
        ["seed: `process_batch`", f"{m['seed_anomalies']:,}", f"{m['seed_ms']:.2f}",
         fmt(m["seed_per_s"]), "1.00"],
        ["default: `process_change_batch` (warm state store)", f"{m['default_anomalies']:,}",
         f"{m['default_ms']:.2f}", fmt(m["default_per_s"]), f"{m['default_ms'] / m['seed_ms']:.2f}"],
    ]  # fmt: skip


HEADER = ["path (2,000 updates per batch)", "anomalies", "ms per batch (median)", "updates/s", "time vs seed"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_path", description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--episodes", action="store_true", help="alert_mode episodes (the service's default)")
    parser.add_argument(
        "--skew", type=float, default=0.0, help="item popularity Zipf s (the pipeline's: 1.0)"
    )
    args = parser.parse_args(argv)
    m = measure(args.updates, args.rounds, episodes=args.episodes, skew=args.skew)
    mode = "episodes" if args.episodes else "every-update"
    section = Section(f"Batch path in process ({m['updates']:,} updates, {args.rounds} rounds, alert_mode "
                      f"{mode}, Zipf s={args.skew})")  # fmt: skip
    section.tables.append((HEADER, table_rows(m)))
    print(render(section))


if __name__ == "__main__":
    main()
