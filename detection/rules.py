"""Deterministic data-quality rules beside the model: named data, evaluated on a whole batch.

A rule is a plain dict (so a TOML table can replace the defaults)::

    {"name": "negative_stock", "kind": "data_quality", "when": "stock < 0",
     "says": "stock is negative", "severity": 85}

``when`` is one or more comparisons joined by ``and``; each side is a number, a variable or
``number * variable``. Variables (NaN where unknown, and any comparison with NaN is false):

    stock, min, max, price                 the update merged onto the item's last accepted state
    prev_stock, prev_min, prev_max, prev_price   that last accepted state (NaN for a new item)
    age          seconds the update's occurred_at lies before the item's latest one
    unchanged    1 when a known item's four numbers are all unchanged, else 0
    left_stock   the stock the item had before its last accepted change of stock
    stock_change stock - prev_stock (negative for a decrease)
    usual_drop, usual_rise   the item's usual decrease and increase of stock (its own history)
    repeated     1 when the item's last accepted full state repeated its state (its feed re-sends
                 full states that confirm the deltas, so a repeat is routine), else 0
    complete     1 when the update as sent carries all four numbers (a full state), else 0
    flag_run     the item's updates flagged in a row just before this one (0 after an accepted one)
    last_complete  1 when the item's last accepted update carried all four numbers, else 0

``severity`` (0-100, default :data:`RULE_FLOOR`) is the least severity score of a row the rule
fires on. From 50 up the rule *alerts*: the decision is an anomaly of kind ``data_quality``
whatever the model says. Below 50 it is a *hint*: evidence that ranks the row above ordinary
updates without alerting on its own. Every decision carries the bitmask of the rules that fired
(at most 32 rules); an entry with ``enabled`` false is left out.

``rebase`` true marks a *level jump* (a comparison with the previous value only): a run of
consecutive reports on which only level jumps alert re-baselines the item like a run of model
flags (the new level is the truth now, or the old one was wrong); updates that carry none of the
numbers the level jumps read neither break nor extend that run. Other alerting rules never
re-baseline: they keep alerting as long as the data is bad.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from detection.severity import RULE_FLOOR

__all__ = ["ALERT_FROM", "DEFAULT_RULES", "DOUBT_FROM", "RULE_VARIABLES", "RuleError", "RuleSet"]

FloatArray = npt.NDArray[np.float64]

DEFAULT_RULES: Final[tuple[dict[str, str | float], ...]] = (
    {"name": "negative_stock", "kind": "data_quality", "when": "stock < 0",
     "says": "stock is negative"},
    {"name": "negative_level", "kind": "data_quality", "when": "min < 0",
     "says": "the min level is negative"},
    {"name": "max_zero", "kind": "data_quality", "when": "max <= 0",
     "says": "the max level is zero or negative"},
    {"name": "min_ge_max", "kind": "data_quality", "when": "min >= max and max > 0",
     "says": "the min level is not below the max level"},
    {"name": "price_nonpositive_with_stock", "kind": "data_quality", "when": "price <= 0 and stock > 0",
     "says": "an item in stock has no positive price"},
    # A restock orders up to the max level: ten times the max is a unit error of the stock or of the
    # levels. Against the report's own max (merged): a change of unit that moves the levels too is
    # no error here (the model's rebase judges it), and a new item's first state is checked too.
    {"name": "stock_10x_max", "kind": "data_quality", "when": "stock > 10 * max and max >= 1",
     "says": "stock is more than ten times the max level"},
    # No repricing or promotion moves a price ninefold in one step; a decimal shift does. A level
    # jump (rebase): when consecutive reports keep it, the new price is the truth (or the old was wrong).
    {"name": "price_jump_9x", "kind": "data_quality", "when": "price > 9 * prev_price and prev_price > 0",
     "says": "the price rose more than ninefold in one update", "rebase": True},
    {"name": "price_drop_9x", "kind": "data_quality", "when": "9 * price < prev_price and price > 0",
     "says": "the price fell more than ninefold in one update", "rebase": True},
    # Late by more than five minutes: an old state re-sent; applying it would undo newer ones.
    {"name": "stale_update", "kind": "data_quality", "when": "age > 300",
     "says": "occurred_at is older than the item's latest update"},
    {"name": "duplicate_update", "kind": "data_quality", "when": "age == 0 and unchanged == 1",
     "says": "the same state with the same occurred_at was already received"},
    # Feeds stamp to the second, so a busy item's sales share one occurred_at: a drop or a receipt
    # stamped with the latest time is movement. A replay (a report re-sent after an update that
    # carried no time) brings back the stock before the last change, or another price or level.
    {"name": "same_time_other_state", "kind": "data_quality",
     "when": "age == 0 and unchanged == 0 and stock_change >= 0 and stock_change < 0.5 * usual_rise",
     "says": "another state with the same occurred_at as the item's latest update, not a sale or a receipt"},
    {"name": "same_time_revert", "kind": "data_quality", "when": "age == 0 and stock == left_stock",
     "says": "a state with the same occurred_at as the item's latest update brings back the stock before "
             "its last change"},
    # Older than the latest update and restoring the stock the item left: a re-sent report.
    {"name": "replayed_stock", "kind": "data_quality", "when": "age > 0 and stock == left_stock",
     "says": "an older report brings back the stock this item had before its last change"},
    # Hints (rank, do not alert): a return of exactly the units just sold, or two reporters a few
    # seconds apart, look the same as a duplicate without a time or a replay within five minutes.
    # Above the min level no restock is due, so a rise back to the previous level is not supply.
    # Only a rise: a sale of the units a return or a receipt just brought is ordinary motion.
    {"name": "reverted_stock", "kind": "data_quality",
     "when": "stock == left_stock and prev_stock > prev_min and stock_change > 0",
     "severity": 45, "says": "the stock went back to its level before the last change, with no restock due"},
    {"name": "out_of_order", "kind": "data_quality", "when": "age > 0", "severity": 45,
     "says": "the update arrived out of order (older than the item's latest)"},
    # A rise back to the previous level that is less than half of this item's usual restock is no
    # receipt even when one is due: a duplicate without a time undoing the last sale.
    {"name": "reverted_stock_small_rise", "kind": "data_quality", "severity": 45,
     "when": "stock == left_stock and prev_stock <= prev_min and stock_change > 0 and stock_change < 0.5 * usual_rise",
     "says": "a restock was due, but the stock went back to its level before the last change by less than "
             "half a usual restock"},
    # Weaker hints (rank above ordinary updates, below the others). Stock rises only by receipts
    # (reordered at the min level: the (s, S) policy) and customer returns (about one sale):
    # Not where the item's full states repeat it: a feed re-sending full states (a nightly sync)
    # repeats routinely, and ranking every sync above real errors did harm.
    # A redelivery carries the fields of the message it repeats: a full state after a delta is a sync.
    {"name": "unchanged_update", "kind": "data_quality",
     "when": "unchanged == 1 and repeated == 0 and complete <= last_complete",
     "severity": 30, "says": "the update changes nothing (a change event repeating the item's state)"},
    # A feed that re-sends this item's full state confirms its deltas with it: a full state that
    # moves the stock contradicts them (an old state re-sent, when no occurred_at can tell). Not
    # after a flagged update: that delta was not taken, so the next full state brings its motion.
    {"name": "full_state_moves_stock", "kind": "data_quality", "severity": 45,
     "when": "complete == 1 and repeated == 1 and stock_change != 0 and flag_run == 0",
     "says": "a full state moving the stock, from a feed whose full states of this item repeat its deltas"},
    {"name": "rise_not_due", "kind": "data_quality",
     "when": "stock_change >= 0.5 * usual_rise and prev_stock > prev_min", "severity": 30,
     "says": "a restock-sized rise while the stock was above its min level (no reorder due)"},
    {"name": "unexplained_rise", "kind": "data_quality",
     "when": "stock_change > 3 * usual_drop and stock_change < 0.5 * usual_rise", "severity": 30,
     "says": "a rise too large for a return and too small for a restock of this item"},
)  # fmt: skip

RULE_VARIABLES: Final = ("stock", "min", "max", "price", "prev_stock", "prev_min", "prev_max",
                         "prev_price", "age", "unchanged", "left_stock", "stock_change", "usual_drop",
                         "usual_rise", "repeated", "complete", "flag_run", "last_complete")  # fmt: skip
_MEMO: Final = 4096  # bitmasks remembered by fired/describe (a batch sees a handful)
ALERT_FROM: Final = 50.0  # a rule with at least this severity alerts; below it is a hint
DOUBT_FROM: Final = (
    45.0  # a hint this strong doubts the change it came with (rolled back on the next contradiction)
)
_OPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
    "!=": lambda a, b: (a != b) & ~np.isnan(a) & ~np.isnan(b),
}  # fmt: skip
# per field (stock, min, max, price): the variables that read it
_FIELD_VARS: Final = (("stock", "prev_stock", "left_stock", "stock_change"), ("min", "prev_min"),
                      ("max", "prev_max"), ("price", "prev_price"))  # fmt: skip
_CLAUSE = re.compile(r"^\s*(.+?)\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$")
_TERM = re.compile(
    r"^(?:([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*\*\s*)?([a-z_]+)$|^([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)$"
)


class RuleError(ValueError):
    """A rule table that cannot be used (unknown variable, bad syntax, duplicate name, ...)."""


@dataclass(frozen=True, slots=True)
class _Term:
    coef: float
    name: str | None  # None: the constant ``coef``

    def value(self, env: Mapping[str, FloatArray]) -> FloatArray | float:
        return self.coef if self.name is None else self.coef * env[self.name]


def _term(text: str, rule: str) -> _Term:
    m = _TERM.match(text.strip())
    if not m:
        raise RuleError(f"rule {rule!r}: cannot read {text!r} (a number, a variable or number * variable)")
    if m.group(3) is not None:
        return _Term(float(m.group(3)), None)
    name = m.group(2)
    if name not in RULE_VARIABLES:
        raise RuleError(f"rule {rule!r}: unknown variable {name!r} (known: {', '.join(RULE_VARIABLES)})")
    return _Term(float(m.group(1)) if m.group(1) else 1.0, name)


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    kind: str
    says: str
    when: str
    severity: float
    clauses: tuple[tuple[_Term, str, _Term], ...]
    rebase: bool = False


class RuleSet:
    """A compiled rule table; :meth:`evaluate` returns one uint32 bitmask per row."""

    __slots__ = ("_alert_mask", "_described", "_fired", "_rules")

    def __init__(self, rules: Sequence[Mapping[str, Any]] = DEFAULT_RULES) -> None:
        if len(rules) > 32:
            raise RuleError(f"at most 32 rules, got {len(rules)}")
        compiled: list[_Rule] = []
        for spec in rules:
            if str(spec.get("enabled", True)).lower() == "false":
                continue
            name = str(spec.get("name", ""))
            when = str(spec.get("when", ""))
            if not name or not when or any(r.name == name for r in compiled):
                raise RuleError(f"every rule needs a unique name and a 'when': {dict(spec)!r}")
            clauses = []
            for part in re.split(r"\s+and\s+", when):
                m = _CLAUSE.match(part)
                if not m:
                    raise RuleError(f"rule {name!r}: cannot read {part!r} (like 'stock < 0')")
                clauses.append((_term(m.group(1), name), m.group(2), _term(m.group(3), name)))
            kind, says = str(spec.get("kind", "data_quality")), str(spec.get("says", when))
            rebase = str(spec.get("rebase", False)).lower() in ("true", "1", "1.0")
            compiled.append(_Rule(name, kind, says, when, _severity(spec, name), tuple(clauses), rebase))
        self._rules = tuple(compiled)
        self._alert_mask = sum(1 << k for k, r in enumerate(self._rules) if r.severity >= ALERT_FROM)
        self._fired: dict[int, tuple[str, ...]] = {}  # per bitmask: asked once per event, few distinct
        self._described: dict[int, tuple[str, ...]] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self._rules)

    def table(self) -> list[dict[str, str | float]]:
        """The rules as plain dicts (what the model metadata stores)."""
        return [{"name": r.name, "kind": r.kind, "when": r.when, "says": r.says, "severity": r.severity,
                 **({"rebase": 1.0} if r.rebase else {})} for r in self._rules]  # fmt: skip

    @property
    def floors(self) -> npt.NDArray[np.float64]:
        """Each rule's least severity score, in table order."""
        return np.array([r.severity for r in self._rules], dtype=np.float64)

    @property
    def alert_mask(self) -> int:
        """The bits of the rules that alert (severity >= :data:`ALERT_FROM`); the others are hints."""
        return self._alert_mask

    @property
    def rebase_mask(self) -> int:
        """The bits of the alerting rules that are level jumps (``rebase``): a consistent run re-baselines."""
        return sum(1 << k for k, r in enumerate(self._rules) if r.rebase and r.severity >= ALERT_FROM)

    @property
    def doubt_mask(self) -> int:
        """The bits of the strong hints (:data:`DOUBT_FROM` up to :data:`ALERT_FROM`): an accepted change
        of stock that fired one is doubted, so the next report contradicting it rolls it back."""
        return sum(1 << k for k, r in enumerate(self._rules) if DOUBT_FROM <= r.severity < ALERT_FROM)

    @property
    def rebase_fields(self) -> npt.NDArray[np.float64]:
        """1.0 for each of stock, min, max, price that a level jump reads (its run's evidence)."""
        read = {t.name for r in self._rules if r.rebase for c in r.clauses for t in (c[0], c[2]) if t.name}
        return np.array([float(any(v in read for v in _FIELD_VARS[f])) for f in range(4)])

    def floor_of(self, bits: npt.NDArray[np.uint32]) -> npt.NDArray[np.float64]:
        """Per row, the highest severity of the rules fired in ``bits`` (0 where none fired)."""
        out = np.zeros(bits.shape[0], dtype=np.float64)
        for k, r in enumerate(self._rules):
            out = np.where(bits >> np.uint32(k) & np.uint32(1), np.maximum(out, r.severity), out)
        return out

    def evaluate(self, env: Mapping[str, FloatArray], n: int) -> npt.NDArray[np.uint32]:
        """Bit ``k`` of row ``i`` is set when rule ``k`` fires for row ``i``."""
        mask = np.zeros(n, dtype=np.uint32)
        with np.errstate(invalid="ignore"):
            for k, rule in enumerate(self._rules):
                fired = np.ones(n, dtype=bool)
                for lhs, op, rhs in rule.clauses:
                    fired &= _OPS[op](lhs.value(env), rhs.value(env))
                mask[fired] |= np.uint32(1 << k)
        return mask

    def clause_matrix(self) -> npt.NDArray[np.float64]:
        """Rows (rule, lhs coef, lhs var or -1, op, rhs coef, rhs var or -1) for the compiled kernel."""
        ops = list(_OPS)
        rows = [
            [k, lhs.coef, _var(lhs), ops.index(op), rhs.coef, _var(rhs)]
            for k, rule in enumerate(self._rules)
            for lhs, op, rhs in rule.clauses
        ]
        return np.array(rows, dtype=np.float64).reshape(-1, 6)

    def fired(self, bits: int) -> tuple[str, ...]:
        """Names of the rules set in ``bits``, in table order."""
        names = self._fired.get(bits)
        if names is None:
            if len(self._fired) >= _MEMO:
                self._fired.clear()
            names = self._fired[bits] = tuple(r.name for k, r in enumerate(self._rules) if bits >> k & 1)
        return names

    def describe(self, bits: int) -> tuple[str, ...]:
        """``"negative_stock: stock is negative"`` for each rule set in ``bits``."""
        said = self._described.get(bits)
        if said is None:
            if len(self._described) >= _MEMO:
                self._described.clear()
            said = self._described[bits] = tuple(
                f"{r.name}: {r.says}" for k, r in enumerate(self._rules) if bits >> k & 1
            )
        return said


def _severity(spec: Mapping[str, Any], name: str) -> float:
    try:
        value = float(spec.get("severity", RULE_FLOOR))
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 100.0:
        raise RuleError(f"rule {name!r}: severity must be a number from 0 to 100")
    return value


def _var(term: _Term) -> int:
    return -1 if term.name is None else RULE_VARIABLES.index(term.name)
