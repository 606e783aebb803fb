"""A second, independent inventory generator: warehouse operations as timed events (S, E, L).

Written apart from ``scripts/inventory_sim.py`` and ``detection/`` so that a detector tuned to one
simulator's assumptions is caught by the other. The mechanism is an operations calendar per
item-location (an item is a SKU carried by one warehouse: ``wh-2:sku-00417``):

* **POS postings**: the till system posts the units sold since its last posting every few hours
  while the store is open (one stock decrease per posting, none when nothing sold), so a
  decrease is an aggregate of many sales. Demand has a weekday profile per department, an
  hour-of-day curve, a seasonal wave over the period, overdispersion (gamma-Poisson), and slow
  movers that sell a unit every week or two.
* **Periodic review replenishment**: each warehouse reviews on two fixed weekdays; when the
  position (on hand + on order) is at or below the min level, it orders up to the max level in
  whole case packs; the receipt arrives after a lead time, sometimes short-shipped, and never
  while the supplier is out of stock (some items go out of stock and stay there for weeks).
* **Shrink and cycle counts**: theft and damage take units without a record, so the system stock
  drifts above the shelf; sales stop when the shelf is empty (phantom inventory) and a cycle
  count every few weeks corrects the system stock down to what is there.
* **Calendar prices**: repricing on Sunday nights, promotions from a Monday to a Sunday.
* **Planogram resets**: on one date some departments re-plan min and max from recent demand.
* **A partial feed**: each message carries only the fields that changed (EDI 846 style deltas);
  warehouses with ``full_sync`` also send each active item's full state every night;
  ``occurred_at`` only from the warehouses whose feed carries it.

Reporting errors (``scripts/warehouse_faults.py``) corrupt messages, not the truth.

    python -m scripts.warehouse_sim --out /tmp/wsim --seed 3
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from scripts.sim_files import write_sets
from scripts.warehouse_faults import FULL, FaultInjector, Message, TrueEvent
from scripts.warehouse_ops import HOUR, Calendar, Loc, WarehouseConfig, make_locs

__all__ = ["WarehouseConfig", "simulate", "simulate_with_causes", "write"]

START = datetime(2026, 5, 4, tzinfo=UTC)  # a Monday


def simulate(cfg: WarehouseConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """(snapshot S, events E in time order, labels L)."""
    snapshot, events, labels, _ = simulate_with_causes(cfg)
    return snapshot, events, labels


def simulate_with_causes(
    cfg: WarehouseConfig,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str], list[str]]:
    """:func:`simulate` plus, per event, what the true event was (for studying false alarms)."""
    rng = np.random.default_rng(cfg.seed)
    locs = make_locs(cfg, rng)
    dept_weekday = [list(rng.uniform(0.6, 1.5, 7)) for _ in range(cfg.n_departments)]
    wh_reviews = [tuple(int(x) for x in rng.choice(6, 2, replace=False)) for _ in range(cfg.n_warehouses)]
    timed = [rng.random() < cfg.timed_share for _ in range(cfg.n_warehouses)]
    syncs = [rng.random() < cfg.full_sync for _ in range(cfg.n_warehouses)]
    reset_depts = {d for d in range(cfg.n_departments) if rng.random() < cfg.reset_share}
    reset_at = float(rng.uniform(cfg.days * 0.3, cfg.days * 0.7)) // 1 + 2 * HOUR
    snapshot = []
    for loc in locs:
        if loc.launch == 0:
            snapshot.append(_doc(loc.item_id, loc.state(), loc))
        cal = Calendar(
            loc, cfg if syncs[loc.wh] else replace(cfg, full_sync=0.0), rng, dept_weekday[loc.dept]
        )
        cal.plan(wh_reviews[loc.wh], reset_at if loc.dept in reset_depts else None)
        cal.run()
        if loc.launch > 0 and loc.events:
            first = loc.events[0]
            loc.events[0] = TrueEvent(first.t, FULL, first.state, first.cause, first.qty)
    faults = FaultInjector(cfg.error_rate, rng, [loc.events for loc in locs])
    messages: list[tuple[float, int, Message]] = []
    for k in range(len(locs)):
        for m in faults.item_messages(k):
            messages.append((m.sent, k, m))
    messages.sort(key=lambda x: (x[0], x[1]))
    events, labels, causes = [], {}, []
    for n, (_, k, m) in enumerate(messages):
        causes.append(m.cause)
        loc = locs[k]
        ev: dict[str, Any] = {"event_id": f"wev-{cfg.seed}-{n:08d}", "item_id": loc.item_id}
        if len(m.fields) == 4:
            ev.update(category=f"dept-{loc.dept:02d}", warehouse_id=f"wh-{loc.wh}")
        ev.update({f: _num(f, v) for f, v in zip(m.fields, m.values, strict=True)})
        if timed[loc.wh]:
            ev["occurred_at"] = (START + timedelta(days=m.at)).isoformat().replace("+00:00", "Z")
        events.append(ev)
        if m.kind:
            labels[ev["event_id"]] = m.kind
    return snapshot, events, labels, causes


def _num(name: str, value: float) -> float | int:
    return round(value, 4) if name == "price" else int(value)


def _doc(item_id: str, state: tuple[float, float, float, float], loc: Loc) -> dict[str, Any]:
    return {"item_id": item_id, "stock_quantity": int(state[0]), "min_stock_level": int(state[1]),
            "max_stock_level": int(state[2]), "price": state[3], "category": f"dept-{loc.dept:02d}",
            "warehouse_id": f"wh-{loc.wh}"}  # fmt: skip


def write(out: Path, cfg: WarehouseConfig) -> dict[str, int]:
    """Simulate and write items.jsonl (S), events.jsonl (E), labels.json (L) under ``out``."""
    return write_sets(out, *simulate(cfg))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    for f in fields(WarehouseConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    print(json.dumps(write(out, WarehouseConfig(**args))))


if __name__ == "__main__":
    main()
