"""A small change stream for the state tests: snapshot items, partial updates, errors, new items."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from detection import ChangeDetector, StateTable, parse_updates
from tests.fakes import Rec
from tests.unit.detection.test_detector import snapshot_docs

__all__ = ["offline", "snapshot_docs", "stream"]


def stream(n: int = 600, *, partitions: int = 2, seed: int = 1) -> dict[tuple[str, int], list[Rec]]:
    """Updates keyed by item (item i -> partition i % partitions), in order per partition."""
    rng = np.random.default_rng(seed)
    docs = {d["item_id"]: d for d in snapshot_docs()}
    stock = {k: float(d["stock_quantity"]) for k, d in docs.items()}
    out: dict[tuple[str, int], list[Rec]] = {("in", p): [] for p in range(partitions)}
    for k in range(n):
        i = int(rng.integers(0, 340))
        item = f"sku-{i}"
        msg: dict[str, Any] = {"item_id": item, "event_id": f"e{k}"}
        if item in stock:
            step = max(1.0, 0.03 * docs[item]["max_stock_level"])
            stock[item] = max(0.0, stock[item] - float(rng.integers(0, 3)) * step)
            msg["stock_quantity"] = stock[item] * (12 if k % 97 == 0 else 1)  # a case-pack error now and then
            if k % 53 == 0:
                msg["price"] = docs[item]["price"] * 10  # a decimal shift
        elif k % 5:  # a new item: complete, except every 5th update (missing_field when unknown)
            msg.update(stock_quantity=40, min_stock_level=10, max_stock_level=100, price=9.5, category="tv")
        tp = ("in", i % partitions)
        out[tp].append(Rec("in", tp[1], len(out[tp]), 1_000 + k, item.encode(), orjson.dumps(msg), []))
    return out


def offline(
    detector: ChangeDetector, recs: dict[tuple[str, int], list[Rec]]
) -> tuple[Any, StateTable, list[Rec]]:
    """One decide_batch over the whole stream: decisions per row, the final table, the rows' records."""
    table = detector.baseline(parse_updates(snapshot_docs())[0])
    rows = [r for tp in sorted(recs) for r in recs[tp]]
    batch, rejects = parse_updates([orjson.loads(r.value) for r in rows])
    assert not rejects
    decisions, changes = detector.decide_batch(table, batch)
    changes.apply_to(table)
    return decisions, table, rows
