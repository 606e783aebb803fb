"""Labelled reporting errors for the inventory simulator: reports that differ from the truth.

Kinds (retail data-quality literature: unit-of-measure and case-pack mix-ups, decimal shifts,
phantom inventory, duplicate receipts, master-data errors, late and duplicated messages):

=====================  ==========================================================================
case_pack_x12/x24      stock reported in units where cases were meant (x12, x24)
case_pack_div12        stock reported in cases where units were meant (/12)
decimal_shift_x10      stock x10; ``decimal_shift_div10`` /10; ``decimal_shift_x100`` x100
phantom_drop           stock reported at 0 or far down without a sale
double_receipt         a restock booked twice (reported stock = truth + the receipt again)
negative_stock         stock reported below zero
price_x10/div10/x100   price decimal shift
price_typo             two leading digits swapped or a digit repeated
price_zero             price 0 for an item in stock
min_ge_max             min level set to (or above) the max level
max_zero               max level 0
min_x10                min level x10
stale_update           an old state re-sent late (older ``occurred_at``)
duplicate_update       the previous report re-sent (same fields, same ``occurred_at``)
---------------------  --------------------------------------------------------------------------
(``MORE_ERROR_MIX``, added for the held-out shapes J-N)
case_pack_x6           stock reported in units where six-packs were meant
stock_transposed       two leading digits of the stock swapped (a keying error), >= 3x off
price_div100           price reported in hundreds where units were meant (cents/dollars)
max_x10                max level x10 (a level configuration error)
levels_swapped         min and max levels entered the wrong way round
=====================  ==========================================================================

Truth goes on after an error; a price or level error is corrected by the item's next report.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

Event = dict[str, Any]

DEFAULT_ERROR_MIX: Final[dict[str, float]] = {
    "case_pack_x12": 1.0, "case_pack_x24": 0.5, "case_pack_div12": 0.7,
    "decimal_shift_x10": 1.0, "decimal_shift_div10": 0.8, "decimal_shift_x100": 0.5,
    "phantom_drop": 1.2, "double_receipt": 8.0, "negative_stock": 0.8,
    "price_x10": 0.7, "price_div10": 0.7, "price_x100": 0.3, "price_typo": 0.8, "price_zero": 0.4,
    "min_ge_max": 0.5, "max_zero": 0.4, "min_x10": 0.5,
    "stale_update": 0.7, "duplicate_update": 0.7,
}  # fmt: skip

MORE_ERROR_MIX: Final[dict[str, float]] = {
    "case_pack_x6": 0.8, "stock_transposed": 0.8, "price_div100": 0.3, "max_x10": 0.4, "levels_swapped": 0.4,
}  # fmt: skip

_STOCK_FACTORS: Final = {
    "case_pack_x12": 12,
    "case_pack_x24": 24,
    "decimal_shift_x10": 10,
    "decimal_shift_x100": 100,
    "case_pack_x6": 6,
}
_STOCK_DIVISORS: Final = {"case_pack_div12": 12, "decimal_shift_div10": 10}
_PRICE_FACTORS: Final = {"price_x10": 10.0, "price_div10": 0.1, "price_x100": 100.0, "price_div100": 0.01}
_LEVELS: Final = ("min_stock_level", "max_stock_level")


class ErrorInjector:
    """Corrupts a share ``rate`` of reports; call :meth:`start_item` before each item's reports."""

    def __init__(
        self, rate: float, mix: dict[str, float], rng: np.random.Generator, *, has_time: bool
    ) -> None:
        self.rate = rate
        self.mix = {
            k: w
            for k, w in mix.items()
            if w > 0 and (has_time or k not in ("stale_update", "duplicate_update"))
        }
        self.rng = rng
        self.start_item()

    def start_item(self) -> None:
        self.history: list[tuple[float, Event]] = []  # (time, full true state)
        self.last: tuple[float, Event] | None = None
        self.fix: set[str] = set()

    def report(self, t: float, report: Event, state: Event) -> list[tuple[float, Event]]:
        """The report(s) to publish for one true update: possibly corrupted, possibly one extra."""
        body = dict(report)
        for key in self.fix:
            body[key] = state[key]
        self.fix = set()
        out: list[tuple[float, Event]] = []
        if self.rng.random() < self.rate:
            kind = self._pick(body, state)
            if kind in ("stale_update", "duplicate_update"):
                out.append((t, body))
                extra = self._late(kind, t)
                if extra is not None:
                    out.append(extra)
            elif kind is not None:
                out.append((t, {**self._corrupt(kind, body, state), "_error": kind}))
        if not out:
            out.append((t, body))
        self.history.append((t, dict(state)))
        self.last = out[-1] if "_error" not in out[-1][1] else (t, body)
        return out

    def _applicable(self, kind: str, body: Event, state: Event) -> bool:  # noqa: PLR0911
        stock = int(state["stock_quantity"])
        if kind in _STOCK_FACTORS or kind == "negative_stock":
            return "stock_quantity" in body and stock >= 1
        if kind in _STOCK_DIVISORS:
            return "stock_quantity" in body and stock >= 2 * _STOCK_DIVISORS[kind]
        if kind == "phantom_drop":
            return "stock_quantity" in body and stock >= max(6, 0.3 * state["min_stock_level"])
        if kind == "double_receipt":
            return "_restock" in body
        if kind == "stock_transposed":
            return "stock_quantity" in body and _transposed(stock) is not None
        if kind == "price_zero":
            return stock > 0
        if kind == "stale_update":
            return any(t0 < self._now(body) - 1.0 for t0, _ in self.history)
        if kind == "duplicate_update":
            return self.last is not None
        return True

    def _now(self, body: Event) -> float:
        return self.history[-1][0] if self.history else 0.0

    def _pick(self, body: Event, state: Event) -> str | None:
        kinds = [k for k in self.mix if self._applicable(k, body, state)]
        if not kinds:
            return None
        w = np.array([self.mix[k] for k in kinds])
        return str(kinds[int(self.rng.choice(len(kinds), p=w / w.sum()))])

    def _corrupt(self, kind: str, body: Event, state: Event) -> Event:
        rng, out = self.rng, dict(body)
        stock = int(state["stock_quantity"])
        if kind in _STOCK_FACTORS:
            out["stock_quantity"] = stock * _STOCK_FACTORS[kind]
        elif kind in _STOCK_DIVISORS:
            out["stock_quantity"] = stock // _STOCK_DIVISORS[kind]
        elif kind == "phantom_drop":
            out["stock_quantity"] = 0 if rng.random() < 0.5 else int(stock * rng.uniform(0.0, 0.15))
        elif kind == "stock_transposed":
            out["stock_quantity"] = _transposed(stock)
        elif kind == "double_receipt":
            out["stock_quantity"] = stock + int(body["_restock"])
        elif kind == "negative_stock":
            out["stock_quantity"] = -int(rng.integers(1, max(2, stock // 3 + 2)))
        elif kind in _PRICE_FACTORS or kind in ("price_typo", "price_zero"):
            out["price"] = _bad_price(kind, float(state["price"]), rng)
            self.fix.add("price")
        else:
            lo, hi = int(state["min_stock_level"]), int(state["max_stock_level"])
            out["min_stock_level"], out["max_stock_level"] = {
                "min_ge_max": (hi + int(rng.integers(0, max(1, hi // 4) + 1)), hi),
                "max_zero": (lo, 0),
                "min_x10": (lo * 10, hi),
                "max_x10": (lo, hi * 10),
                "levels_swapped": (hi, lo),
            }[kind]
            self.fix.update(_LEVELS)
        return out

    def _late(self, kind: str, t: float) -> tuple[float, Event] | None:
        if kind == "duplicate_update" and self.last is not None:
            t0, body = self.last
            return t + 1e-5, {**body, "_at": t0, "_error": kind}
        old = [(t0, s) for t0, s in self.history if t0 < t - 1.0]
        if not old:
            return None
        t0, s = old[int(self.rng.integers(len(old)))]
        return t + 1e-5, {**s, "_at": t0, "_error": kind}


def _transposed(stock: int) -> int | None:
    """The stock with its two leading digits swapped, when that is at least 3x off (else None)."""
    digits = str(stock)
    if len(digits) < 2 or digits[0] == digits[1] or digits[1] == "0":
        return None
    swapped = int(digits[1] + digits[0] + digits[2:])
    return swapped if max(swapped / stock, stock / swapped) >= 3.0 else None


def _bad_price(kind: str, price: float, rng: np.random.Generator) -> float:
    if kind == "price_zero":
        return 0.0
    if kind in _PRICE_FACTORS:
        return round(price * _PRICE_FACTORS[kind], 4)
    digits = f"{price:.2f}".replace(".", "").lstrip("0")
    if len(digits) >= 2 and digits[0] != digits[1] and rng.random() < 0.5:
        swapped = digits[1] + digits[0] + digits[2:]
        factor = int(swapped) / int(digits)
        if abs(math.log(factor)) >= math.log(1.5):
            return round(price * factor, 4)
    return round(price * (10.0 if rng.random() < 0.5 else 0.1) * rng.uniform(0.95, 1.05), 4)
