"""``python -m bench.path_outputs OUT``: every output of both batch paths on a varied stream, for diffs.

Not a benchmark: the check that a speed change of the batch paths changes no byte. The bench
updates (uniform and Zipf-popular) with edits mixed in — partial updates, ISO and epoch
``occurred_at``, extra attributes, propagated headers, invalid values, new items with and without
all numbers, replays — go through :func:`consumer.scoring.batch.process_batch` (seed) and
:func:`consumer.scoring.change_batch.process_change_batch` in each alert mode (``episodes``;
``every-update`` with a decisions topic; the changelog written in the batch), at a fixed ``now``.
Each output record, each result's counters and each batch's staged state are written as one JSON
line; compare two runs' files (``cmp``) before and after a change.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.batch_path import BATCH, Rec, train_bench_detector, warm_context
from bench.common import ITEMS, encoded_updates, train_bench_model
from consumer.scoring.batch import BatchConfig, BatchResult, process_batch
from consumer.scoring.change_batch import ChangeContext, process_change_batch
from consumer.scoring.episode_batch import EpisodeContext

NOW = datetime(2026, 12, 2, 8, 0, 0, 123456, tzinfo=UTC)


def _edit(k: int, obj: dict[str, Any]) -> dict[str, Any] | bytes:
    """Update ``k`` of the stream, varied by its position (most stay as they are)."""
    if k % 97 == 5:
        return {key: v for key, v in obj.items() if key not in ("price", "min_stock_level")}
    if k % 89 == 3:
        return obj | {"occurred_at": f"2026-11-{1 + k % 28:02d}T10:{k % 60:02d}:00Z", "colour": "red"}
    if k % 83 == 7:
        return obj | {"occurred_at": 1_790_000_000 + k * 37, "category": f"cat-{k % 5}"}
    if k % 211 == 11:
        return obj | {"stock_quantity": "many"}
    if k % 199 == 13:
        return {"item_id": f"new-{k}", "stock_quantity": 5, "price": 2.5}
    if k % 193 == 17:
        return obj | {"item_id": f"new-{k}", "stock_quantity": 10_000}
    if k % 401 == 19:
        return b"not json"
    if k % 59 == 23:
        return obj | {"stock_quantity": -3, "note": "x" * 40}
    if k % 307 == 29:
        return obj | {"occurred_at": "2099-01-01T00:00:00Z"}
    return obj


def stream(start: int, n: int, skew: float) -> list[list[Rec]]:
    """Edited updates as records of two partitions, in poll batches (one batch replayed)."""
    recs: list[Rec] = []
    for k, (key, value) in enumerate(encoded_updates(start, n, skew=skew)):
        edited = _edit(k, orjson.loads(value))
        raw = edited if isinstance(edited, bytes) else orjson.dumps(edited)
        headers = [("traceparent", f"00-{k:032x}-01".encode())] if k % 7 == 0 else []
        recs.append(Rec("in", k % 2, start + k, 1_700_000_000_000 + k * 1000, key, raw, headers))
    out = [recs[a : a + BATCH] for a in range(0, n, BATCH)]
    return [*out[:3], out[1], *out[3:]]  # batch 1 again: its updates are replays


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("latin-1")


def _lines(label: str, b: int, result: BatchResult) -> list[bytes]:
    lines = [orjson.dumps([label, b, r.topic, _text(r.key), _text(r.value), [(k, "<now>" if k == "dlq.dead_lettered_at" else _text(v)) for k, v in r.headers or ()], r.partition])
             for r in result.outputs]  # fmt: skip
    counts = [result.n_in, result.n_valid, result.n_anomalies, dict(result.dlq_reasons), result.suppressed]
    lines.append(orjson.dumps([label, b, "counts", counts]))
    if result.state is not None:
        for p, (ids, recs, offs) in sorted(result.state.by_partition.items()):
            digest = hashlib.sha256(recs.tobytes() + offs.tobytes()).hexdigest()
            lines.append(orjson.dumps([label, b, "state", p, ids, digest]))
    return lines


def dump(n: int) -> list[bytes]:
    """The output lines of every path and mode on ``n`` updates of each stream shape."""
    seed_model, detector = train_bench_model(), train_bench_detector()
    plain = BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq")
    with_decisions = BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq", decisions_topic="decisions")
    out: list[bytes] = []
    for skew in (0.0, 1.0):
        work = stream(ITEMS, n, skew)
        for b, recs in enumerate(work):
            out += _lines(f"seed-{skew}", b, process_batch(recs, seed_model, with_decisions, now=NOW))
        modes = (("episodes", EpisodeContext(), plain), ("every-update", None, with_decisions))
        for mode, episodes, config in modes:
            warm = warm_context()
            warm.store._tables[1] = warm_context().store.table(0)  # both partitions hold every item
            ctx = ChangeContext(warm.store, warm.changelog_topic, episodes=episodes)
            for b, recs in enumerate(work):
                result = process_change_batch(recs, detector, ctx, config, now=NOW)
                ctx.published(result)
                ctx.acknowledged(result)
                out += _lines(f"{mode}-{skew}", b, result)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.path_outputs", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("out", help="file to write the output lines to")
    parser.add_argument("--updates", type=int, default=40_000)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the dead letters' warnings
    lines = dump(args.updates)
    with open(args.out, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    print(f"{len(lines):,} lines, sha256 {hashlib.sha256(b''.join(lines)).hexdigest()[:16]}")


if __name__ == "__main__":
    main()
