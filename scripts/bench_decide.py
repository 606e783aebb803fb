"""Per-batch cost of the default detector's decide_batch against the seed's decide_features.

    python -m scripts.bench_decide            # 2000-row batches of a simulated stream

Both get the same 2000 updates already parsed (columns): the seed scores the (n, 7) state features
of those updates (merged onto the item's last seen numbers, as the seed scores a full state), the
default gathers states, merges, builds change features, scores, applies the rules, computes
severity and the new states. Prints the median of many batches and the ratio; the host is shared,
so run it a few times and compare ratios, not milliseconds.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from detection import parse_item, parse_updates, train_detector, train_model
from detection.features import features_from_columns
from detection.updates import UpdateBatch
from scripts.inventory_sim import SimConfig, simulate


def _slice(u: UpdateBatch, a: int, b: int) -> UpdateBatch:
    return UpdateBatch(u.item_ids[a:b], u.stock[a:b], u.min[a:b], u.max[a:b], u.price[a:b],
                       u.occurred_at[a:b], u.groups[a:b], u.event_ids[a:b])  # fmt: skip


def _seed_columns(snapshot_docs: list[dict[str, object]], b: UpdateBatch) -> list[np.ndarray]:
    """The batch's updates as full states for the seed (absent numbers from the snapshot item)."""
    last = {str(d["item_id"]): d for d in snapshot_docs}
    keys = ("stock_quantity", "min_stock_level", "max_stock_level", "price")
    cols = []
    for key, col in zip(keys, (b.stock, b.min, b.max, b.price), strict=True):
        fill = np.array([float(last[i][key]) if i in last else 0.0 for i in b.item_ids])  # type: ignore[arg-type]
        cols.append(np.where(np.isnan(col), fill, col))
    return cols


def main() -> None:
    snapshot_docs, events, _ = simulate(SimConfig(seed=5, n_items=3000, days=10))
    snapshot, _ = parse_updates(snapshot_docs)
    updates, _ = parse_updates(events)
    detector = train_detector(snapshot)
    seed = train_model([parse_item(d) for d in snapshot_docs])
    table = detector.baseline(snapshot)
    n, size = len(updates), 2000
    batches = [_slice(updates, a, a + size) for a in range(0, n - size, size)][:40]
    seed_x = [features_from_columns(*_seed_columns(snapshot_docs, b)) for b in batches]
    t_default, t_seed = [], []
    for _ in range(3):
        for b, x in zip(batches, seed_x, strict=True):
            t0 = time.perf_counter()
            seed.decide_features(x)
            t1 = time.perf_counter()
            _decisions, changes = detector.decide_batch(table, b)
            t2 = time.perf_counter()
            changes.apply_to(table)
            t_seed.append(t1 - t0)
            t_default.append(t2 - t1)
    ms_seed, ms_default = statistics.median(t_seed) * 1e3, statistics.median(t_default) * 1e3
    print(f"batch {size}: seed decide_features {ms_seed:.2f} ms, default decide_batch {ms_default:.2f} ms, "
          f"ratio {ms_default / ms_seed:.2f} ({size / ms_default * 1e3:,.0f} updates/s)")  # fmt: skip


if __name__ == "__main__":
    main()
