"""The operations calendar of ``scripts/warehouse_sim.py``: item-locations and their true events.

See that module's docstring for the mechanism; this module holds the per-item simulation.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from scripts.warehouse_faults import FULL, TrueEvent

HOUR = 1.0 / 24.0


@dataclass(frozen=True)
class WarehouseConfig:
    """The shape of one data set; vary these and the seed rather than tuning to one."""

    seed: int = 1
    n_skus: int = 500
    n_warehouses: int = 3
    carry_share: float = 0.7  # chance that a warehouse carries a SKU
    n_departments: int = 10
    days: float = 35.0
    demand_scale: float = 1.0  # multiplies every item's daily demand
    slow_share: float = 0.25  # items selling a unit every week or two
    post_hours: float = 3.0  # hours between POS postings
    lead_days: float = 4.0  # mean supplier lead time
    short_ship: float = 0.15  # chance a receipt brings 60-95 % of the order
    oos_share: float = 0.05  # items whose supplier runs out for 1-4 weeks
    shrink: float = 0.01  # units lost per unit sold, unrecorded
    count_days: float = 21.0  # mean days between cycle counts of an item
    reprice_share: float = 0.04  # items repriced each Sunday night
    promo_share: float = 0.03  # items starting a one-week promotion each Monday
    reset_share: float = 0.3  # departments re-planned on the reset date
    new_share: float = 0.03  # items launched during the period (absent from the snapshot)
    full_sync: float = 0.0  # share of warehouses sending a nightly full state of active items
    timed_share: float = 0.5  # share of warehouses whose feed carries occurred_at
    error_rate: float = 0.01


@dataclass
class Loc:
    """One SKU in one warehouse: the truth and what drives it."""

    item_id: str
    dept: int
    wh: int
    case: int
    demand: float  # mean units per day
    stock: int
    shelf: int  # physical units (stock minus unrecorded shrink)
    min: int
    max: int
    price: float
    regular: float
    decimals: int
    on_order: int = 0
    oos_until: float = -1.0
    oos_from: float = math.inf
    launch: float = 0.0
    events: list[TrueEvent] = field(default_factory=list)

    def state(self) -> tuple[float, float, float, float]:
        return float(self.stock), float(self.min), float(self.max), self.price


def _levels(demand: float, lead: float, case: int, rng: np.random.Generator) -> tuple[int, int]:
    """Min covers lead time plus a review cycle with safety stock; max adds 1-3 weeks of cover."""
    lo = demand * (lead + 3.5) + 1.6 * math.sqrt(demand * (lead + 3.5)) + 1
    hi = lo + max(case, demand * rng.uniform(7, 21))
    lo_c = max(case, case * round(lo / case))
    return int(lo_c), int(max(lo_c + case, case * math.ceil(hi / case)))


def make_locs(cfg: WarehouseConfig, rng: np.random.Generator) -> list[Loc]:
    depts = [(math.exp(rng.uniform(math.log(0.2), math.log(900))), rng.uniform(0.4, 1.6))
             for _ in range(cfg.n_departments)]  # fmt: skip
    locs = []
    for s in range(cfg.n_skus):
        d = int(rng.integers(cfg.n_departments))
        med_price, dept_velocity = depts[d]
        price = round(max(0.05, med_price * rng.lognormal(0, 0.5)), 2 if med_price < 300 else 0)
        # cheap goods sell in volume; demand per day is heavy-tailed within a department
        base = dept_velocity * 40.0 / math.sqrt(max(price, 0.05)) * rng.lognormal(0, 1.0)
        if rng.random() < cfg.slow_share:
            base = rng.uniform(0.05, 0.3)
        case = int(rng.choice([1, 1, 6, 12, 24])) if price < 50 else 1
        for w in range(cfg.n_warehouses):
            if rng.random() > cfg.carry_share:
                continue
            demand = base * cfg.demand_scale * rng.lognormal(0, 0.3)
            lo, hi = _levels(demand, cfg.lead_days, case, rng)
            stock = int(rng.integers(lo, hi + 1))
            loc = Loc(f"wh-{w}:sku-{s:05d}", d, w, case, demand, stock, stock, lo, hi, price, price,
                      2 if med_price < 300 else 0)  # fmt: skip
            if rng.random() < cfg.oos_share:
                loc.oos_from = rng.uniform(0, cfg.days * 0.7)
                loc.oos_until = loc.oos_from + rng.uniform(7, 28)
            if rng.random() < cfg.new_share:
                loc.launch = rng.uniform(1, cfg.days * 0.6)
            locs.append(loc)
    return locs


def _rate(loc: Loc, t: float, cfg: WarehouseConfig, weekday: list[float], promo: bool) -> float:
    """Units per day at time ``t``: weekday profile, opening hours, a seasonal wave, promotions."""
    hour = (t % 1.0) * 24.0
    if not 8.0 <= hour < 22.0:
        return 0.0
    day = int(t) % 7
    wave = 1.0 + 0.3 * math.sin(2 * math.pi * t / cfg.days + loc.dept)
    return loc.demand * weekday[day] * wave * (24.0 / 14.0) * (2.2 if promo else 1.0)


class Calendar:
    """One item-location's operations calendar; :meth:`run` appends its true events to ``loc.events``."""

    def __init__(
        self, loc: Loc, cfg: WarehouseConfig, rng: np.random.Generator, weekday: list[float]
    ) -> None:
        self.loc, self.cfg, self.rng, self.weekday = loc, cfg, rng, weekday
        self.q: list[tuple[float, int, str, int]] = []  # (time, tie-breaker, kind, quantity)
        self.n = 0
        self.promo_until, self.active, self.last_post = -1.0, False, loc.launch

    def push(self, t: float, kind: str, qty: int = 0) -> None:
        self.n += 1
        heapq.heappush(self.q, (t, self.n, kind, qty))

    def plan(self, reviews: tuple[int, ...], reset_at: float | None) -> None:
        cfg, rng, start = self.cfg, self.rng, self.loc.launch
        self.push(start + rng.uniform(0, cfg.post_hours) * HOUR, "post")
        self.push(start + rng.exponential(cfg.count_days), "count")
        for d in range(math.ceil(start), int(cfg.days) + 1):
            if d % 7 in reviews:
                self.push(d + 6 * HOUR, "review")
            if d % 7 == 6 and rng.random() < cfg.reprice_share:
                self.push(d + 23 * HOUR, "reprice")
            if d % 7 == 0 and d > 0 and rng.random() < cfg.promo_share:
                self.push(d + 0.5 * HOUR, "promo")
            if cfg.full_sync:
                self.push(d + 23.5 * HOUR, "sync")
        if reset_at is not None and reset_at > start:
            self.push(reset_at, "reset")

    def run(self) -> None:
        while self.q:
            t, _, kind, qty = heapq.heappop(self.q)
            if t >= self.cfg.days:
                break
            getattr(self, f"_{kind}")(t, qty)

    def _record(self, t: float, names: tuple[str, ...], cause: str, qty: int = 0) -> None:
        self.loc.events.append(TrueEvent(t, names, self.loc.state(), cause, qty))

    def _post(self, t: float, _qty: int) -> None:
        loc, rng, cfg = self.loc, self.rng, self.cfg
        self.push(t + cfg.post_hours * HOUR * rng.uniform(0.8, 1.2), "post")
        promo = self.promo_until >= 0 and t < self.promo_until
        span = t - self.last_post
        mean = (
            sum(_rate(loc, self.last_post + k * span / 6, cfg, self.weekday, promo) for k in range(6))
            / 6
            * span
        )
        self.last_post = t
        units = min(int(rng.poisson(rng.gamma(2.0, mean / 2.0))) if mean > 0 else 0, loc.shelf)
        if units == 0:
            return
        lost = int(rng.binomial(units, min(cfg.shrink, 1.0))) if cfg.shrink else 0
        loc.stock -= units
        loc.shelf = max(0, loc.shelf - units - lost)
        self.active = True
        self._record(t, ("stock_quantity",), "sale")

    def _review(self, t: float, _qty: int) -> None:
        loc = self.loc
        position = loc.stock + loc.on_order
        if position <= loc.min and not loc.oos_from <= t < loc.oos_until:
            order = loc.case * math.ceil(max(loc.max - position, loc.case) / loc.case)
            loc.on_order += order
            lead = max(1.0, self.rng.gamma(4.0, self.cfg.lead_days / 4.0)) + self.rng.uniform(7, 16) * HOUR
            self.push(t + lead, "receipt", order)

    def _receipt(self, t: float, qty: int) -> None:
        loc, rng = self.loc, self.rng
        loc.on_order -= qty
        short = rng.random() <= self.cfg.short_ship
        got = loc.case * int(qty * rng.uniform(0.6, 0.95) / loc.case) if short else qty
        if got > 0:
            loc.stock += got
            loc.shelf += got
            self.active = True
            self._record(t, ("stock_quantity",), "receipt", got)

    def _count(self, t: float, _qty: int) -> None:
        self.push(t + self.rng.exponential(self.cfg.count_days), "count")
        if self.loc.stock != self.loc.shelf:
            self.loc.stock = self.loc.shelf
            self.active = True
            self._record(t, ("stock_quantity",), "count")

    def _reprice(self, t: float, _qty: int) -> None:
        loc = self.loc
        if self.promo_until < t:
            loc.regular = round(loc.regular * math.exp(self.rng.normal(0, 0.08)), loc.decimals) or loc.regular
            loc.price = loc.regular
            self._record(t, ("price",), "price")

    def _promo(self, t: float, _qty: int) -> None:
        loc = self.loc
        if self.promo_until < t:
            cut = self.rng.choice([0.7, 0.75, 0.8, 0.85, 0.9])
            loc.price = round(loc.regular * cut, loc.decimals) or loc.price
            self.promo_until = t + 7 - 2 * HOUR  # ends Sunday 22:30, before the nightly sync
            self.push(self.promo_until, "promo_end")
            self._record(t, ("price",), "price")

    def _promo_end(self, t: float, _qty: int) -> None:
        self.loc.price = self.loc.regular
        self._record(t, ("price",), "price")

    def _reset(self, t: float, _qty: int) -> None:
        loc = self.loc
        forecast = max(loc.demand * self.rng.lognormal(0, 0.2), 0.05)  # a new forecast, not the truth
        loc.min, loc.max = _levels(forecast, self.cfg.lead_days, loc.case, self.rng)
        self._record(t, ("min_stock_level", "max_stock_level"), "levels")

    def _sync(self, t: float, _qty: int) -> None:
        if self.active:
            self.active = False
            self._record(t, FULL, "sync")
