"""A month of realistic inventory updates with labelled reporting errors (offline evaluation data).

Independent of ``detection/`` on purpose: the detector must not share assumptions with the data
it is judged on. One run writes three files:

* ``items.jsonl``  (S) the baseline snapshot at t=0, one full state per item (``category``,
  ``warehouse_id`` included), without the items that first appear later on the stream;
* ``events.jsonl`` (E) updates in order: ``event_id``, ``item_id``, ``occurred_at`` (ISO-8601, may
  be absent) and only the changed fields, or the full state (a share ``full_rate`` of events, and
  every new item's first event);
* ``labels.json``  (L) ``{event_id: kind}`` for the erroneous events only.

Normal motion: categories of very different scale (fasteners: thousands of units at cents; TVs:
tens of units at hundreds), sales as a Poisson process with weekday seasonality, restocks when
stock falls to the min level (order-up-to-max or fixed order quantity, after a lead time),
promotions (10-40 % off for days, with a sales spike), regular price changes, occasional level
re-configurations. Errors (``scripts/inventory_errors.py``) are reports that differ from the
truth; the truth goes on, and price/level errors are corrected by the next event of the item.

    python -m scripts.inventory_sim --out /tmp/sim --seed 1 --n-items 3000
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from scripts.inventory_errors import DEFAULT_ERROR_MIX, MORE_ERROR_MIX, ErrorInjector
from scripts.sim_files import write_sets

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
Event = dict[str, Any]


@dataclass(frozen=True)
class SimConfig:
    """The shape of one simulated data set; vary these (and the seed) rather than tuning to one."""

    seed: int = 1
    n_items: int = 3000
    n_categories: int = 12
    n_warehouses: int = 4
    days: float = 30.0
    events_per_item_day: float = 1.5  # mean sale reports per item and day (varies per item)
    error_rate: float = 0.01
    full_rate: float = 0.25  # share of events that carry the full state
    occurred_at_rate: float = 1.0  # share of events that carry occurred_at
    new_item_share: float = 0.03  # items absent from the snapshot, first seen on the stream
    restock_policy: str = "mixed"  # "up_to_max", "fixed_qty" or "mixed"
    promo_per_month: float = 0.4
    price_changes_per_month: float = 0.5
    level_changes_per_month: float = 0.1
    tiny_share: float = 0.0  # items stocked in ones (max level 2-8, one unit per sale)
    bulk_share: float = 0.0  # bulk SKUs: levels x20, sold by the case (6, 12 or 24 units)
    season_ramp: float = 1.0  # demand at the end of the period relative to its start (trend)
    burst_rate: float = 0.0  # chance that a sale starts a burst of 3-10 sales within minutes
    return_rate: float = 0.0  # chance that a sale is later returned (stock rises by its units)
    no_category: bool = False  # documents without a category (no peer group to compare with)
    more_errors: bool = False  # add the kinds of MORE_ERROR_MIX (x6 packs, transposed digits, ...)
    error_mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ERROR_MIX))


# `--help` of each SimConfig field (error_mix has no flag: --more-errors extends it)
FLAG_HELP: dict[str, str] = {
    "seed": "random seed: the same seed and flags write the same files",
    "n_items": "number of items (SKUs) simulated",
    "n_categories": "number of categories; their price and stock scales spread over 5 decades",
    "n_warehouses": "number of warehouses the items are spread over (warehouse_id)",
    "days": "length of the simulated period in days",
    "events_per_item_day": "mean sale reports per item and day (varies per item)",
    "error_rate": "share of events that are reporting errors (labelled in labels.json)",
    "full_rate": "share of events that carry the item's full state instead of only the changed fields",
    "occurred_at_rate": "share of events that carry occurred_at",
    "new_item_share": "share of items absent from items.jsonl, first seen on the event stream",
    "restock_policy": "how stock is refilled at the min level: up_to_max, fixed_qty or mixed",
    "promo_per_month": "promotions per item and month (10-40%% off for days, with a sales spike)",
    "price_changes_per_month": "regular price changes per item and month",
    "level_changes_per_month": "min/max level re-configurations per item and month",
    "tiny_share": "share of items stocked in ones (max level 2-8, one unit per sale)",
    "bulk_share": "share of bulk items: levels x20, sold by the case (6, 12 or 24 units)",
    "season_ramp": "demand at the end of the period relative to its start (a trend; 1 = flat)",
    "burst_rate": "chance that a sale starts a burst of 3-10 sales within minutes",
    "return_rate": "chance that a sale is later returned (stock rises by its units)",
    "no_category": "write documents without a category (no peer group to compare with)",
    "more_errors": "add the error kinds of MORE_ERROR_MIX (x6 packs, transposed digits, ...)",
}


@dataclass
class Item:
    """The true state of one item and its behaviour parameters."""

    item_id: str
    category: str
    warehouse_id: str
    stock: int
    min_level: int
    max_level: int
    price: float
    regular_price: float
    sale_rate: float  # sale reports per day
    sale_size: float  # mean units per sale report
    fixed_qty: bool
    decimals: int
    case: int = 1  # units per sale step (bulk SKUs sell by the case)
    promo_until: float = -1.0
    restock_at: float = -1.0
    order_qty: int = 0
    events: list[tuple[float, str]] = field(default_factory=list)

    def state(self, category: bool = True) -> dict[str, Any]:
        out = {"item_id": self.item_id, "stock_quantity": self.stock, "min_stock_level": self.min_level,
               "max_stock_level": self.max_level, "price": self.price, "category": self.category,
               "warehouse_id": self.warehouse_id}  # fmt: skip
        if not category:
            del out["category"]
        return out


def _categories(cfg: SimConfig, rng: np.random.Generator) -> list[tuple[str, float, float, float]]:
    """(name, median price, median max level, sale-size share): scales spread over 5 decades."""
    out = []
    for c in range(cfg.n_categories):
        log_price = rng.uniform(math.log(0.03), math.log(1500.0))
        # cheap goods are stocked in large quantities, expensive ones in few
        log_max = 9.2 - 0.62 * (log_price - math.log(0.03)) + rng.normal(0, 0.5)
        out.append(
            (f"cat-{c:02d}", math.exp(log_price), max(6.0, math.exp(log_max)), rng.uniform(0.01, 0.06))
        )
    return out


def _make_item(i: int, cfg: SimConfig, cats: list[Any], rng: np.random.Generator) -> Item:
    name, price_med, max_med, size_share = cats[int(rng.integers(len(cats)))]
    max_level = max(4, round(max_med * rng.lognormal(0, 0.5)))
    min_level = max(1, round(max_level * rng.uniform(0.1, 0.35)))
    decimals = 2 if price_med < 200 else 0
    price = round(max(0.01, price_med * rng.lognormal(0, 0.45)), decimals) or 0.01
    policy = cfg.restock_policy if cfg.restock_policy != "mixed" else rng.choice(["up_to_max", "fixed_qty"])
    it = Item(
        item_id=f"sku-{cfg.seed}-{i:06d}",
        category=name,
        warehouse_id=f"wh-{int(rng.integers(cfg.n_warehouses))}",
        stock=int(rng.integers(min_level, max_level + 1)),
        min_level=min_level,
        max_level=max_level,
        price=price,
        regular_price=price,
        sale_rate=cfg.events_per_item_day * rng.lognormal(0, 0.5),
        sale_size=max(0.6, max_level * size_share * rng.lognormal(0, 0.4)),
        fixed_qty=policy == "fixed_qty",
        decimals=decimals,
    )
    # the draws below happen only when asked for, so the older shapes stay what they were
    if cfg.tiny_share and rng.random() < cfg.tiny_share:
        it.max_level, it.min_level, it.sale_size = int(rng.integers(2, 9)), 1, 0.6
        it.stock = int(rng.integers(1, it.max_level + 1))
    elif cfg.bulk_share and rng.random() < cfg.bulk_share:
        it.case = int(rng.choice([6, 12, 24]))
        it.max_level, it.min_level, it.stock = it.max_level * 20, it.min_level * 20, it.stock * 20
        it.sale_size = max(1.0, it.sale_size * 20 / it.case)
    return it


def _weekday_factor(t_days: float) -> float:
    return 1.35 if (START + timedelta(days=t_days)).weekday() >= 5 else 0.9


def _simulate_item(it: Item, cfg: SimConfig, rng: np.random.Generator) -> list[tuple[float, Event]]:
    """The true, in-order updates of one item: (time in days, changed fields)."""
    out: list[tuple[float, Event]] = []
    month = cfg.days / 30.0
    timed: list[tuple[float, str]] = []
    for kind, rate in (("price", cfg.price_changes_per_month), ("promo", cfg.promo_per_month),
                       ("levels", cfg.level_changes_per_month)):  # fmt: skip
        for _ in range(rng.poisson(rate * month)):
            timed.append((float(rng.uniform(0, cfg.days)), kind))
    timed.sort()
    t, burst = 0.0, 0
    returns: list[tuple[float, int]] = []
    while True:
        trend = cfg.season_ramp ** (t / cfg.days)
        if burst > 0:  # a till or a sync flushing its queue: sales minutes apart
            burst -= 1
            t += rng.uniform(1e-4, 3e-3)
        else:
            t += rng.exponential(1.0 / (it.sale_rate * _weekday_factor(t) * trend))
            burst = int(rng.integers(3, 11)) if cfg.burst_rate and rng.random() < cfg.burst_rate else 0
        while timed and timed[0][0] <= t:
            tt, kind = timed.pop(0)
            out.extend(_other_event(it, tt, kind, rng))
        if it.promo_until >= 0 and t >= it.promo_until:
            out.append((it.promo_until, {"price": it.regular_price}))
            it.price, it.promo_until = it.regular_price, -1.0
        _receive(it, t, returns, out)
        if t >= cfg.days:
            break
        boost = 1.0 if it.promo_until < 0 else 2.5
        qty = min(it.stock, it.case * (1 + int(rng.poisson(max(it.sale_size * boost - 1, 0.0)))))
        if qty <= 0:
            continue
        it.stock -= qty
        out.append((t, {"stock_quantity": it.stock}))
        if cfg.return_rate and rng.random() < cfg.return_rate:  # a customer brings some of it back days later
            returns.append((t + rng.uniform(0.5, 7.0), int(rng.integers(1, qty + 1))))
            returns.sort()
        if it.stock <= it.min_level and it.restock_at < 0:
            it.restock_at = t + rng.uniform(0.3, 3.0)
            it.order_qty = it.max_level - it.min_level if it.fixed_qty else it.max_level - it.stock
    out.sort(key=lambda e: e[0])
    return out


def _receive(it: Item, t: float, returns: list[tuple[float, int]], out: list[tuple[float, Event]]) -> None:
    """Restocks and customer returns due by ``t``, in time order."""
    while True:
        due_return = returns[0][0] if returns and returns[0][0] <= t else math.inf
        due_restock = it.restock_at if 0 <= it.restock_at <= t else math.inf
        if due_return == due_restock == math.inf:
            return
        if due_return < due_restock:
            it.stock += returns.pop(0)[1]
            out.append((due_return, {"stock_quantity": it.stock}))
        else:
            it.stock += it.order_qty
            out.append((due_restock, {"stock_quantity": it.stock, "_restock": it.order_qty}))
            it.restock_at = -1.0


def _other_event(it: Item, t: float, kind: str, rng: np.random.Generator) -> list[tuple[float, Event]]:
    if kind == "price" and it.promo_until < 0:
        it.regular_price = round(it.regular_price * (1 + rng.choice([-1, 1]) * rng.uniform(0.02, 0.15)),
                                 it.decimals) or it.regular_price  # fmt: skip
        it.price = it.regular_price
        return [(t, {"price": it.price})]
    if kind == "promo" and it.promo_until < 0:
        it.price = round(it.regular_price * (1 - rng.uniform(0.1, 0.4)), it.decimals) or it.price
        it.promo_until = t + rng.uniform(2, 10)
        return [(t, {"price": it.price})]
    if kind == "levels":
        k = rng.uniform(0.8, 1.3)
        it.min_level = max(1, round(it.min_level * k))
        it.max_level = max(it.min_level + 2, round(it.max_level * k))
        return [(t, {"min_stock_level": it.min_level, "max_stock_level": it.max_level})]
    return []


def simulate(cfg: SimConfig) -> tuple[list[Event], list[Event], dict[str, str]]:
    """(snapshot S, events E in order, labels L) for one configuration."""
    rng = np.random.default_rng(cfg.seed)
    cats = _categories(cfg, rng)
    items = [_make_item(i, cfg, cats, rng) for i in range(cfg.n_items)]
    is_new = rng.random(cfg.n_items) < cfg.new_item_share
    mix = {**cfg.error_mix, **MORE_ERROR_MIX} if cfg.more_errors else cfg.error_mix
    injector = ErrorInjector(cfg.error_rate, mix, rng, has_time=cfg.occurred_at_rate > 0)
    snapshot: list[Event] = []
    timeline: list[tuple[float, int, Event]] = []
    for k, (it, new) in enumerate(zip(items, is_new, strict=True)):
        state = it.state(category=not cfg.no_category)
        if not new:
            snapshot.append(dict(state))
        truth = _simulate_new(it, cfg, rng) if new else _simulate_item(it, cfg, rng)
        injector.start_item()
        first_full = bool(new)
        for t, changes in truth:
            state.update({key: v for key, v in changes.items() if not key.startswith("_")})
            report = dict(changes)
            if first_full or rng.random() < cfg.full_rate:
                report = {**state, **changes}
                first_full = False
            timeline.extend((at, k, body) for at, body in injector.report(t, report, state))
    timeline.sort(key=lambda e: (e[0], e[1]))
    return snapshot, *_finish(timeline, items, cfg, rng)


def _simulate_new(it: Item, cfg: SimConfig, rng: np.random.Generator) -> list[tuple[float, Event]]:
    """A new item: it appears at a random time with a full state and then moves normally."""
    appear = float(rng.uniform(0, cfg.days * 0.7))
    first: tuple[float, Event] = (appear - 1e-3, {"stock_quantity": it.stock})
    events = [(t + appear, e) for t, e in _simulate_item(it, cfg, rng) if t + appear < cfg.days]
    return [first, *events]


def _finish(
    timeline: list[tuple[float, int, Event]], items: list[Item], cfg: SimConfig, rng: np.random.Generator
) -> tuple[list[Event], dict[str, str]]:
    events: list[Event] = []
    labels: dict[str, str] = {}
    for n, (t, k, body) in enumerate(timeline):
        event_id = f"ev-{cfg.seed}-{n:08d}"
        kind = body.pop("_error", None)
        at = body.pop("_at", t)
        fields_ = {key: v for key, v in body.items() if not key.startswith("_") and key != "item_id"}
        event: Event = {"event_id": event_id, "item_id": items[k].item_id, **fields_}
        if rng.random() < cfg.occurred_at_rate or kind in ("stale_update", "duplicate_update"):
            event["occurred_at"] = (START + timedelta(days=at)).isoformat().replace("+00:00", "Z")
        events.append(event)
        if kind:
            labels[event_id] = kind
    return events, labels


def write(out: Path, cfg: SimConfig) -> dict[str, int]:
    """Simulate and write S, E and L under ``out``; returns counts."""
    return write_sets(out, *simulate(cfg))


def build_parser() -> argparse.ArgumentParser:
    """``--out`` and one flag per SimConfig field, each with its help and default."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="directory to write items.jsonl, events.jsonl, labels.json"
    )
    for f in fields(SimConfig):
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(f.default, bool):
            parser.add_argument(flag, action="store_true", help=FLAG_HELP[f.name])
        elif f.name != "error_mix":
            text = f"{FLAG_HELP[f.name]} (default: {f.default})"
            parser.add_argument(flag, type=type(f.default), default=f.default, help=text)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = vars(build_parser().parse_args(argv))
    out = args.pop("out")
    print(json.dumps(write(out, SimConfig(**args))))


if __name__ == "__main__":
    main()
