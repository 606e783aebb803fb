"""Reporting errors for ``scripts/warehouse_sim.py``: messages that differ from the truth.

Each true event becomes one message (its changed fields); a share ``rate`` is corrupted with one
kind drawn among those that apply to it. The truth goes on: a corrupted stock is replaced by the
item's next stock message, and a price or level error is corrected by the item's next message
(which then also carries the corrected field, as a feed re-sending the master data would).

=================  ===============================================================================
uom_x6/x12/x24     stock in eaches where case packs were meant (x6, x12, x24)
uom_div12          stock in cases where eaches were meant (/12)
decimal_x10/x100   a shifted decimal point in the stock; ``decimal_div10`` the other way
transposed         two adjacent digits of the stock swapped, where that is at least 2x off
sign_flip          the stock with a minus sign (a return keyed as a sale, a credit as a debit)
phantom_zero       the stock reported as 0 with units on hand (the next message brings them back)
double_receipt     a receipt booked twice (stock + the received quantity again)
stale_replay       an old full state re-sent after the current one (with its old occurred_at)
wrong_item         another item's stock keyed against this item (at least 3x off)
price_x100/div100  the price in cents where units were meant, or the reverse
price_zero         price 0 on an item in stock
min_ge_max         the min level set at or above the max level
max_zero           the max level set to 0
levels_swapped     min and max entered the wrong way round
=================  ===============================================================================
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Final

import numpy as np

FULL: Final = ("stock_quantity", "min_stock_level", "max_stock_level", "price")
MIX: Final[dict[str, float]] = {
    "uom_x6": 0.6, "uom_x12": 0.8, "uom_x24": 0.5, "uom_div12": 0.6,
    "decimal_x10": 0.8, "decimal_x100": 0.4, "decimal_div10": 0.6,
    "transposed": 0.8, "sign_flip": 0.6, "phantom_zero": 1.0, "double_receipt": 10.0,
    "stale_replay": 0.8, "wrong_item": 0.6,
    "price_x100": 0.4, "price_div100": 0.4, "price_zero": 0.3,
    "min_ge_max": 0.3, "max_zero": 0.2, "levels_swapped": 0.3,
}  # fmt: skip
_STOCK_X: Final = {"uom_x6": 6, "uom_x12": 12, "uom_x24": 24, "decimal_x10": 10, "decimal_x100": 100}
_STOCK_DIV: Final = {"uom_div12": 12, "decimal_div10": 10}
_PRICE_X: Final = {"price_x100": 100.0, "price_div100": 0.01, "price_zero": 0.0}
_LEVEL_KINDS: Final = ("min_ge_max", "max_zero", "levels_swapped")


@dataclass(frozen=True, slots=True)
class TrueEvent:
    """One true change of an item: time (days), the fields it changed, the full state after it."""

    t: float
    fields: tuple[str, ...]
    state: tuple[float, float, float, float]  # stock, min, max, price
    cause: str
    qty: int = 0


@dataclass(frozen=True, slots=True)
class Message:
    """What the feed publishes: sent at ``sent``, ``occurred_at`` = ``at`` (days)."""

    sent: float
    at: float
    fields: tuple[str, ...]
    values: tuple[float, ...]
    kind: str | None = None
    cause: str = ""  # what the true event was (sale, receipt, count, price, levels, sync)


class FaultInjector:
    """Turns each item's true events into messages, a share ``rate`` of them wrong."""

    def __init__(self, rate: float, rng: np.random.Generator, histories: list[list[TrueEvent]]) -> None:
        self.rate, self.rng, self.histories = rate, rng, histories
        self.times = [[e.t for e in h] for h in histories]

    def item_messages(self, k: int) -> list[Message]:
        out: list[Message] = []
        fix: set[str] = set()
        history = self.histories[k]
        for j, ev in enumerate(history):
            names = tuple(f for f in FULL if f in ev.fields or f in fix)
            fix = set()
            msg = Message(ev.t, ev.t, names, tuple(ev.state[FULL.index(f)] for f in names), None, ev.cause)
            if self.rng.random() < self.rate:
                kind = self._pick(k, j)
                if kind == "stale_replay":
                    out.append(msg)
                    msg = self._stale(k, j)
                elif kind is not None:
                    msg, fix = self._corrupt(kind, k, j, msg)
            out.append(msg)
        return out

    def _applicable(self, kind: str, k: int, j: int) -> bool:  # noqa: PLR0911
        ev = self.histories[k][j]
        stock = ev.state[0]
        has_stock = "stock_quantity" in ev.fields
        if kind in _STOCK_X or kind == "sign_flip":
            return has_stock and stock >= 1
        if kind in _STOCK_DIV:
            return has_stock and stock >= 2 * _STOCK_DIV[kind]
        if kind == "transposed":
            return has_stock and _transposed(int(stock), self.rng) is not None
        if kind == "phantom_zero":
            return has_stock and stock >= max(5.0, 0.3 * ev.state[1])
        if kind == "double_receipt":
            return ev.cause == "receipt"
        if kind == "stale_replay":
            return self._old(k, j) is not None
        if kind == "wrong_item":
            return has_stock
        if kind == "price_zero":
            return stock > 0
        return True

    def _pick(self, k: int, j: int) -> str | None:
        kinds = [kind for kind in MIX if self._applicable(kind, k, j)]
        if not kinds:
            return None
        w = np.array([MIX[kind] for kind in kinds])
        return kinds[int(self.rng.choice(len(kinds), p=w / w.sum()))]

    def _old(self, k: int, j: int) -> int | None:
        """An earlier event of the item, a day or more before event ``j``, with another stock."""
        h = self.histories[k]
        cut = bisect.bisect_right(self.times[k], h[j].t - 1.0)
        olds = [i for i in range(cut) if h[i].state[0] != h[j].state[0]]
        return olds[int(self.rng.integers(len(olds)))] if olds else None

    def _stale(self, k: int, j: int) -> Message:
        i = self._old(k, j)
        assert i is not None
        old, now = self.histories[k][i], self.histories[k][j]
        return Message(
            now.t + self.rng.uniform(1, 60) / 1440.0, old.t, FULL, old.state, "stale_replay", "replay"
        )

    def _corrupt(self, kind: str, k: int, j: int, msg: Message) -> tuple[Message, set[str]]:
        ev = self.histories[k][j]
        state = dict(zip(FULL, ev.state, strict=True))
        fix: set[str] = set()
        stock = int(ev.state[0])
        if kind in _STOCK_X:
            state["stock_quantity"] = stock * _STOCK_X[kind]
        elif kind in _STOCK_DIV:
            state["stock_quantity"] = stock // _STOCK_DIV[kind]
        elif kind == "transposed":
            state["stock_quantity"] = _transposed(stock, self.rng) or stock
        elif kind == "sign_flip":
            state["stock_quantity"] = -stock
        elif kind == "phantom_zero":
            state["stock_quantity"] = 0
        elif kind == "double_receipt":
            state["stock_quantity"] = stock + ev.qty
        elif kind == "wrong_item":
            other = self._other_stock(k, ev.t, stock)
            if other is None:
                return msg, fix
            state["stock_quantity"] = other
        elif kind in _PRICE_X:
            state["price"] = round(ev.state[3] * _PRICE_X[kind], 4)
            fix.add("price")
        else:
            lo, hi = int(ev.state[1]), int(ev.state[2])
            state["min_stock_level"], state["max_stock_level"] = {
                "min_ge_max": (hi + int(self.rng.integers(0, max(1, hi // 3) + 1)), hi),
                "max_zero": (lo, 0),
                "levels_swapped": (hi, lo),
            }[kind]
            fix.update(("min_stock_level", "max_stock_level"))
        names = tuple(f for f in FULL if f in msg.fields or f in fix or (kind in _PRICE_X and f == "price"))
        return Message(msg.sent, msg.at, names, tuple(state[f] for f in names), kind, ev.cause), fix

    def _other_stock(self, k: int, t: float, stock: int) -> int | None:
        """Another item's stock at time ``t`` that is at least 3x off this one's (10 tries)."""
        for _ in range(10):
            o = int(self.rng.integers(len(self.histories)))
            i = bisect.bisect_right(self.times[o], t) - 1
            if o == k or i < 0:
                continue
            other = int(self.histories[o][i].state[0])
            if other > 0 and abs(math.log((other + 0.5) / (stock + 0.5))) >= math.log(3.0):
                return other
        return None


def _transposed(stock: int, rng: np.random.Generator) -> int | None:
    """The stock with two adjacent digits swapped (a random position), when that is >= 2x off."""
    digits = str(stock)
    spots = [
        p for p in range(len(digits) - 1) if digits[p] != digits[p + 1] and not (p == 0 and digits[1] == "0")
    ]
    ok = [p for p in spots if _ratio(stock, _swap(digits, p)) >= 2.0]
    return _swap(digits, ok[int(rng.integers(len(ok)))]) if ok else None


def _swap(digits: str, p: int) -> int:
    return int(digits[:p] + digits[p + 1] + digits[p] + digits[p + 2 :])


def _ratio(a: int, b: int) -> float:
    return max(a, b) / max(min(a, b), 1)
