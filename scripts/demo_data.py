"""The demo's inventory and its change stream: sales, restocks and repricing of known items, with
planted reporting errors (as partial updates, what warehouse systems send) and malformed messages."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CATEGORIES", "MALFORMED", "PLANTED", "dead_letters_expected", "normal_item", "updates"]

# name, min level, max level, price: categories of very different scale
CATEGORIES = (("screws", 20, 80, 4.0), ("paint", 50, 200, 12.0), ("cable", 100, 400, 30.0),
              ("drills", 10, 60, 180.0))  # fmt: skip


def normal_item(rng: np.random.Generator, item_id: str) -> dict[str, Any]:
    """A believable item: stock inside its min-max band, a price around its category's."""
    name, lo, hi, price = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    return {
        "item_id": item_id,
        "stock_quantity": int(rng.integers(lo, hi + 1)),
        "min_stock_level": lo,
        "max_stock_level": hi,
        "price": round(float(price * rng.uniform(0.8, 1.2)), 2),
        "category": name,
    }


# label -> the fields of a partial update made from the item's true state
PLANTED: tuple[tuple[str, Any], ...] = (
    ("case-pack error: stock counted in units, not boxes (x12)", lambda s: {"stock_quantity": max(s["stock_quantity"], 10) * 12}),
    ("negative stock", lambda s: {"stock_quantity": -40}),
    ("price typo x1000", lambda s: {"price": round(s["price"] * 1000, 2)}),
    ("min level typed above the max", lambda s: {"min_stock_level": s["max_stock_level"] + 500}),
    ("double-booked receipt: a full restock booked twice", lambda s: {"stock_quantity": s["stock_quantity"] + 2 * s["max_stock_level"]}),
)  # fmt: skip
MALFORMED: tuple[tuple[bytes | None, bytes], ...] = (
    (b"sku-broken-1", b'{"item_id": "sku-broken-1", "stock_quantity": '),  # truncated JSON
    (b"sku-broken-2", b'{"item_id": "sku-broken-2", "stock_quantity": "NaN"}'),
    (None, b'{"stock_quantity": 10, "min_stock_level": 1}'),  # no item id
    (b"sku-nowhere", b'{"item_id": "sku-nowhere", "stock_quantity": 5}'),  # unknown item, no levels or price
)


def dead_letters_expected(detector: str) -> int:
    """The seed fills an unknown item's missing numbers with its defaults: no dead letter for it."""
    return len(MALFORMED) - (detector == "seed")


def updates(
    rng: np.random.Generator,
    count: int,
    tag: str,
    *,
    state: dict[str, dict[str, Any]],
    planted_every: int = 40,
    planted: set[str] | None = None,
) -> list[dict[str, Any]]:
    """``count`` change events of the items in ``state`` (their true states, advanced in place);
    one planted reporting error every ``planted_every`` (labelled ``_label``; the truth stays), each
    on an item not in ``planted`` (updated in place): an item whose alert episode is still open
    gets no second alert for a second error, so the demo could not show it."""
    ids = sorted(state)
    planted = set() if planted is None else planted
    out: list[dict[str, Any]] = []
    for i in range(count):
        item_id = ids[int(rng.integers(len(ids)))]
        plant = i % planted_every == planted_every // 2
        while plant and item_id in planted:
            item_id = ids[(ids.index(item_id) + 1) % len(ids)]
        s = state[item_id]
        event: dict[str, Any] = {"item_id": item_id, "event_id": f"{tag}{i}"}
        if plant:
            planted.add(item_id)
            label, fields = PLANTED[(i // planted_every) % len(PLANTED)]
            out.append(event | fields(s) | {"_label": label})
            continue
        roll = rng.random()
        if roll < 0.70:  # a sale; below the min level the shelf is restocked instead
            sold = int(rng.integers(1, max(2, s["max_stock_level"] // 20)))
            s["stock_quantity"] = max(0, s["stock_quantity"] - sold)
            event["stock_quantity"] = s["stock_quantity"]
        elif roll < 0.90:  # a restock up to (near) the max level
            s["stock_quantity"] = int(s["max_stock_level"] - rng.integers(0, 3))
            event["stock_quantity"] = s["stock_quantity"]
        elif roll < 0.95:  # repricing within 10 %
            s["price"] = round(s["price"] * float(rng.uniform(0.9, 1.1)), 2)
            event["price"] = s["price"]
        else:  # a full state report
            event |= {k: v for k, v in s.items() if k != "item_id"}
        out.append(event)
    return out
