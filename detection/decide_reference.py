"""The numpy reference of the default detector's batch decision (tests hold the kernel to it).

One vectorised pass per *generation* (the k-th update of an item within the batch), through the
same feature, rule, severity and state functions that training uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from detection.change_decisions import ChangeDecisions
from detection.change_features import (
    CHANGE_FEATURE_NAMES,
    Merged,
    advance,
    change_features,
    initial_states,
    merge,
)
from detection.detector import REBASELINE_RUN, StateChanges, _group_codes
from detection.item_state import (
    DOUBTED,
    JUMP_RUN,
    LAST_FULL,
    PROVISIONAL,
    REPEATED,
    STATE_DTYPE,
    StateRows,
    StateTable,
    is_provisional,
)
from detection.updates import MissingFieldError, UpdateBatch

if TYPE_CHECKING:
    from detection.detector import ChangeDetector

__all__ = ["decide_batch_reference"]

FloatArray = npt.NDArray[np.float64]


def _as_matrix(rows: StateRows) -> np.ndarray:
    return np.stack([rows[name].astype(np.float64) for name in STATE_DTYPE.names or ()], axis=1)


def decide_batch_reference(  # noqa: PLR0915  (one pass in the kernel's order, kept in one place)
    self: ChangeDetector, table: StateTable, batch: UpdateBatch
) -> tuple[ChangeDecisions, StateChanges]:
    """The numpy reference of :meth:`ChangeDetector.decide_batch`: one vectorised pass per generation."""
    n = len(batch)
    uniq, u, gen = _generations(batch.item_ids)
    rows = table.lookup(uniq)
    known_u = rows >= 0
    local = np.zeros(len(uniq), STATE_DTYPE)
    local[known_u] = table.gather(rows[known_u])
    touched = np.zeros(len(uniq), dtype=bool)
    groups = _group_codes(batch.groups)
    scores, sev = np.full(n, np.nan), np.zeros(n)
    bits = np.zeros(n, np.uint32)
    feats = np.zeros((n, len(CHANGE_FEATURE_NAMES)))
    anomaly = np.zeros(n, dtype=bool)
    base_all = np.zeros(n, STATE_DTYPE)
    new_values, peer_med = np.full((n, 4), np.nan), np.full(n, np.nan)
    rejected: dict[int, MissingFieldError] = {}
    for g in range(int(gen.max(initial=-1)) + 1):
        sel = np.flatnonzero(gen == g) if g or gen.any() else np.arange(n)
        us = u[sel]
        prev, known = local[us], known_u[us]
        raw = Merged(
            batch.stock[sel],
            batch.min[sel],
            batch.max[sel],
            batch.price[sel],
            batch.occurred_at[sel],
            groups[sel],
        )
        m, incomplete = merge(prev, known, raw)
        ok = ~incomplete
        for k in np.flatnonzero(incomplete):
            missing = [f for f, col in zip(("stock_quantity", "min_stock_level", "max_stock_level", "price"),
                                           (m.stock, m.min, m.max, m.price), strict=True) if np.isnan(col[k])]  # fmt: skip
            rejected[int(sel[k])] = MissingFieldError(batch.item_ids[int(sel[k])], missing)
        new_item = ~known & ok
        base = prev
        if new_item.any():
            base = prev.copy()
            base[new_item] = initial_states(m)[new_item]
        median, spread = self.peers.lookup(m.group)
        complete = ~(np.isnan(raw.stock) | np.isnan(raw.min) | np.isnan(raw.max) | np.isnan(raw.price))
        base, fresh = _fresh_start(self, base, m, known & ok, complete, peers=(median, spread))
        x = change_features(base, m, median, spread)
        s = self.score(x)
        env = _rule_env(base, m, known & ~fresh, complete)
        b = self.rules.evaluate(env, sel.size)
        alerting = (b & np.uint32(self.rules.alert_mask)) != 0
        base, x, s = _roll_back(
            self, base, m, x, s, eligible=known & ok & ~alerting & ~fresh, peers=(median, spread)
        )
        # the state follows flags beyond the hull only (the kernel's guard)
        flagged, guard = ((s < self.threshold) | alerting) & ok, (_beyond(self, s, x) | alerting) & ok
        jump, run, rebase = _rebase(self, b, base, alerting=alerting, flagged=guard, first=new_item | fresh)
        accepted = ok & (~guard | new_item | fresh | rebase)
        nxt = _jump_run(self, advance(base, m, accepted, rebase & is_provisional(base)), base, raw, m,
                        run=run, jump=jump, flagged=guard, accepted=accepted, rebase=rebase)  # fmt: skip
        _mark_doubted(
            nxt,
            changed=accepted & (m.stock != base["stock"]),
            doubt=(b & np.uint32(self.rules.doubt_mask)) != 0,
        )
        nu = nxt["n_updates"] & np.uint32(~LAST_FULL & 0xFFFFFFFF)  # the fields a redelivery would carry
        nxt["n_updates"] = np.where(
            accepted, np.where(complete, nu | np.uint32(LAST_FULL), nu), nxt["n_updates"]
        )
        _mark_provisional(
            nxt, raw, set_=new_item & guard, kept=known & ok & ~fresh, flagged=guard, rebase=rebase
        )
        _mark_repeated(
            nxt, full=accepted & complete, repeats=env["unchanged"] == 1.0, after_flag=base["flag_run"] >= 1
        )
        local[us[ok]] = nxt[ok]
        known_u[us[ok]], touched[us[ok]] = True, True
        scores[sel] = np.where(ok, s, np.nan)
        bits[sel], feats[sel], anomaly[sel], base_all[sel] = np.where(ok, b, 0), x, flagged, base
        sev[sel] = np.where(ok, self.severity_scale.severity(s, self.rules.floor_of(b)), 0.0)
        new_values[sel], peer_med[sel] = np.stack([m.stock, m.min, m.max, m.price], axis=1), median
    sev = np.where(anomaly, np.maximum(sev, 50.0), np.minimum(sev, 49.9))
    decisions = ChangeDecisions(scores, anomaly, sev, bits, feats, self.threshold, rejected,
                                _as_matrix(base_all), new_values, peer_med, self.rules)  # fmt: skip
    changed = np.flatnonzero(touched)
    return decisions, StateChanges.of(table, list(compress(uniq, touched)), local[changed])


def _roll_back(self: ChangeDetector, base: StateRows, m: Merged, x: np.ndarray, s: np.ndarray, *,
               eligible: np.ndarray, peers: tuple[np.ndarray, np.ndarray]) -> tuple[StateRows, np.ndarray, np.ndarray]:  # fmt: skip
    """A flagged change that is a normal move from the stock before the item's last change, when
    that change was itself beyond normal motion or the previous update was flagged too (and this one
    does not return to exactly that stock), is judged from before it (the kernel's rollback)."""
    left, (median, spread) = base["left_stock"], peers
    with np.errstate(invalid="ignore"):
        cand = eligible & _beyond(self, s, x) & ~np.isnan(left) & (left != base["stock"])
    if not cand.any():
        return base, x, s
    alt = base.copy()
    alt["stock"] = np.where(cand, left, base["stock"])
    alt["left_stock"] = np.where(cand, np.nan, left)
    alt["n_updates"] = np.where(cand, alt["n_updates"] & np.uint32(~DOUBTED & 0xFFFFFFFF), alt["n_updates"])
    nan = np.full(left.shape[0], np.nan)
    last = Merged(base["stock"], base["min"], base["max"], base["price"], nan, m.group)
    last_pen = self.hull.penalty(change_features(alt, last, median, spread))
    x_alt = change_features(alt, m, median, spread)
    # a rise past the max level, which orders fill up to: no receipt explains it
    odd_rise = (base["stock"] > left) & (base["stock"] > base["max"])
    # a second report in a row (or after such a rise) that does not return to exactly that stock
    # ... or one a strong hint came with (DOUBTED)
    doubted = (base["n_updates"] & np.uint32(DOUBTED)) != 0
    confirmed = ((base["flag_run"] >= 1) | odd_rise | doubted) & (m.stock != left)
    roll = cand & ((last_pen > 0.0) | confirmed) & (self.hull.penalty(x_alt) <= 0.0)
    if not roll.any():
        return base, x, s
    return np.where(roll, alt, base), np.where(roll[:, None], x_alt, x), np.where(roll, self.score(x_alt), s)


def _beyond(self: ChangeDetector, s: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Flags beyond the hull at the default budget: the only ones the state follows (the kernel's ``beyond``)."""
    result: np.ndarray = (s + self.state_shift < self.threshold) & (self.hull.penalty(x) > 0.0)
    return result


def _fresh_start(self: ChangeDetector, base: StateRows, m: Merged, eligible: np.ndarray, complete: np.ndarray, *,
                 peers: tuple[np.ndarray, np.ndarray]) -> tuple[StateRows, np.ndarray]:  # fmt: skip
    """Rows whose baseline is provisional and whose update looks right as the item's first state
    start from it instead (the kernel's replacement of a new item's flagged first state)."""
    prov = eligible & is_provisional(base)
    if not prov.any():
        return base, prov
    init = initial_states(m)
    init["n_flagged"] = base["n_flagged"]
    init["n_updates"] = base["n_updates"] & np.uint32(REPEATED)  # the same feed
    x = change_features(init, m, *peers)
    bits = self.rules.evaluate(_rule_env(init, m, np.zeros(prov.shape[0], bool), complete), prov.shape[0])
    fresh = prov & ~_beyond(self, self.score(x), x) & ((bits & np.uint32(self.rules.alert_mask)) == 0)
    return np.where(fresh, init, base), fresh


def _mark_doubted(nxt: StateRows, *, changed: np.ndarray, doubt: np.ndarray) -> None:
    """An accepted change of stock sets :data:`DOUBTED` when a strong hint came with it, else clears it."""
    nu = nxt["n_updates"] & np.uint32(~DOUBTED & 0xFFFFFFFF)
    nxt["n_updates"] = np.where(changed, np.where(doubt, nu | np.uint32(DOUBTED), nu), nxt["n_updates"])


def _mark_provisional(nxt: StateRows, raw: Merged, *, set_: np.ndarray, kept: np.ndarray, flagged: np.ndarray,
                      rebase: np.ndarray) -> None:  # fmt: skip
    """A new item's flagged first state is provisional; a rebaseline or a complete unflagged state
    judged against a provisional baseline (``kept``) confirms it."""
    partial = np.isnan(raw.stock) | np.isnan(raw.min) | np.isnan(raw.max) | np.isnan(raw.price)
    confirm = kept & (rebase | ~(flagged | partial))
    nu = nxt["n_updates"]
    nxt["n_updates"] = np.where(
        set_, nu | np.uint32(PROVISIONAL), np.where(confirm, nu & np.uint32(~PROVISIONAL & 0xFFFFFFFF), nu)
    )


def _mark_repeated(nxt: StateRows, *, full: np.ndarray, repeats: np.ndarray, after_flag: np.ndarray) -> None:
    """An accepted full state (all four numbers) sets :data:`REPEATED` when it repeats the item's
    state (a feed re-sending full states) and clears it when it changes it (full change events),
    except right after flagged updates: it then brings the motion they hid (a correction)."""
    nu = nxt["n_updates"] & np.uint32(~REPEATED & 0xFFFFFFFF)
    full = full & (repeats | ~after_flag)
    nxt["n_updates"] = np.where(full, np.where(repeats, nu | np.uint32(REPEATED), nu), nxt["n_updates"])


def _rebase(self: ChangeDetector, b: np.ndarray, base: StateRows, *, alerting: np.ndarray, flagged: np.ndarray,
            first: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Rows where only level jumps alert, the run each flag extends (level jumps or other flags) and
    the rows that re-baseline: a run of level jumps does as a run of model flags does."""
    jump = alerting & ((b & np.uint32(self.rules.alert_mask & ~self.rules.rebase_mask)) == 0)
    run = np.where(jump == ((base["n_updates"] & np.uint32(JUMP_RUN)) != 0), base["flag_run"], 0)
    return jump, run, flagged & ~first & (run >= REBASELINE_RUN - 1) & (jump | ~alerting)


def _jump_run(self: ChangeDetector, nxt: StateRows, base: StateRows, raw: Merged, m: Merged, *, run: np.ndarray,
              jump: np.ndarray, flagged: np.ndarray, accepted: np.ndarray, rebase: np.ndarray) -> StateRows:  # fmt: skip
    """The kernel's runs of level jumps: a flagged row counts in its own kind of run; an accepted one
    without the level jumps' numbers keeps a run of them; a level jump's rebase resets the regular price."""
    carries = np.zeros(jump.shape[0], dtype=bool)
    for read, col in zip(self.rules.rebase_fields, (raw.stock, raw.min, raw.max, raw.price), strict=True):
        carries |= bool(read) & ~np.isnan(col)
    was = (base["n_updates"] & np.uint32(JUMP_RUN)) != 0
    keep = accepted & ~flagged & was & ~carries
    kept = np.where(keep, base["flag_run"], nxt["flag_run"])
    nxt["flag_run"] = np.where(~accepted, np.minimum(run + 1, 65535), kept)
    on = (~accepted & jump) | keep
    nu = nxt["n_updates"] & np.uint32(~JUMP_RUN & 0xFFFFFFFF)
    nxt["n_updates"] = np.where(on, nu | np.uint32(JUMP_RUN), nu)
    reset = rebase & jump & (m.price > 0)
    nxt["ref_price"] = np.where(reset, np.maximum(m.price, 1e-4), nxt["ref_price"])
    return nxt


def _generations(ids: Sequence[str]) -> tuple[list[str], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Unique ids, each row's index into them, and its generation (earlier updates of its item)."""
    n = len(ids)
    pos: dict[str, int] = {}
    for i in ids:  # C-level setdefault: first occurrence order
        pos.setdefault(i, len(pos))
    if len(pos) == n:
        return list(ids), np.arange(n), np.zeros(n, dtype=np.intp)
    u = np.fromiter(map(pos.__getitem__, ids), dtype=np.intp, count=n)
    order = np.argsort(u, kind="stable")
    su = u[order]
    starts = np.r_[True, su[1:] != su[:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    gen = np.empty(n, dtype=np.intp)
    gen[order] = np.arange(n) - first
    return list(pos), u, gen


def _rule_env(
    base: StateRows, m: Merged, known: npt.NDArray[np.bool_], complete: npt.NDArray[np.bool_]
) -> dict[str, FloatArray]:
    def prev(name: str) -> FloatArray:
        return np.where(known, base[name], np.nan)

    unchanged = known & (m.stock == base["stock"]) & (m.min == base["min"]) & (m.max == base["max"])
    unchanged &= m.price == base["price"]
    return {"stock": m.stock, "min": m.min, "max": m.max, "price": m.price,
            "prev_stock": prev("stock"), "prev_min": prev("min"), "prev_max": prev("max"),
            "prev_price": prev("price"), "age": prev("last_time") - m.time,
            "unchanged": unchanged.astype(np.float64), "left_stock": prev("left_stock"),
            "stock_change": m.stock - prev("stock"), "usual_drop": prev("usual_drop").astype(np.float64),
            "usual_rise": prev("usual_rise").astype(np.float64),
            "repeated": np.where(known, (base["n_updates"] & np.uint32(REPEATED)) != 0, np.nan),
            "complete": complete.astype(np.float64), "flag_run": prev("flag_run").astype(np.float64),
            "last_complete": np.where(known, (base["n_updates"] & np.uint32(LAST_FULL)) != 0, np.nan)}  # fmt: skip
