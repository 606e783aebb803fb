"""The demo's inventory and stock updates: normal items by category, and the planted anomalies."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CATEGORIES", "MALFORMED", "normal_item", "updates"]

CATEGORIES = ((20, 80, 4.0), (50, 200, 12.0), (100, 400, 30.0), (10, 60, 180.0))  # min, max, price


def normal_item(rng: np.random.Generator, item_id: str) -> dict[str, Any]:
    """A believable item: stock inside its min-max band, a price around its category's."""
    lo, hi, price = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    return {
        "item_id": item_id,
        "stock_quantity": int(rng.integers(lo, hi + 1)),
        "min_stock_level": lo,
        "max_stock_level": hi,
        "price": round(float(price * rng.uniform(0.8, 1.2)), 2),
    }


PLANTED: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "stock 50,000 in a 50-200 band",
        {"stock_quantity": 50_000, "min_stock_level": 50, "max_stock_level": 200},
    ),
    ("negative stock", {"stock_quantity": -40, "min_stock_level": 50, "max_stock_level": 200}),
    ("price typo x1000", {"price": 12_000.0, "min_stock_level": 50, "max_stock_level": 200}),
    ("min level above max", {"min_stock_level": 900, "max_stock_level": 200, "stock_quantity": 150}),
    ("empty shelf", {"stock_quantity": 0, "min_stock_level": 100, "max_stock_level": 400, "price": 30.0}),
)
MALFORMED: tuple[tuple[bytes | None, bytes], ...] = (
    (b"sku-broken-1", b'{"item_id": "sku-broken-1", "stock_quantity": '),  # truncated JSON
    (b"sku-broken-2", b'{"item_id": "sku-broken-2", "stock_quantity": "NaN"}'),
    (None, b'{"stock_quantity": 10, "min_stock_level": 1}'),  # no item id
)


def updates(
    rng: np.random.Generator, count: int, tag: str, *, inventory: int, planted_every: int = 40
) -> list[dict[str, Any]]:
    """``count`` updates of known items, one planted anomaly every ``planted_every``."""
    out: list[dict[str, Any]] = []
    for i in range(count):
        item = normal_item(rng, f"sku-{int(rng.integers(inventory)):05d}")
        item["event_id"] = f"{tag}{i}"
        if i % planted_every == planted_every // 2:
            label, fields = PLANTED[(i // planted_every) % len(PLANTED)]
            item.update({"stock_quantity": 120, "price": 12.0, **fields})
            item["item_id"] = f"planted-{tag}{i}"
            item["_label"] = label
        out.append(item)
    return out
