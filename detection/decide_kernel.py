"""The serving path of ``decide_batch`` as one compiled loop over the batch, in stream order.

The numpy path (:mod:`detection.change_features`, :class:`detection.rules.RuleSet`, ...) stays the
reference and the training path; this kernel does the same arithmetic row by row in numba, so
several updates of one item need no generation splitting and no per-generation numpy overhead.
``tests/unit/test_decide_kernel.py`` holds the two to the same results.

The kernel reads and writes the items' :data:`~detection.item_state.STATE_DTYPE` records directly
and works on a float64 copy of one record at a time (fields in order); the float32 fields are
rounded to float32 whenever written, as the record stores them. The forest is walked row by row
with buffers allocated once per batch (:func:`detection.compiled_forest._score_one`).
"""

# ruff: noqa: PLR0917, PLR0912, PLR0915, PLW3301  (numba kernels: positional scalars, one long loop, nested max)
from __future__ import annotations

from typing import Final

import numpy as np
from numba import njit

from detection.compiled_forest import _score_one
from detection.decide_helpers import calibrated_severity, rule_bits
from detection.rules import RULE_VARIABLES

# state columns (STATE_DTYPE order)
S, MN, MX, P, REF, UD, UR, UL, UG, LT, GRP, NU, NF, FR = range(14)
F4_COLS = (REF, UD, UR, UL, UG)
N_FIELDS = 15
LEFT = 14  # left_stock: the stock before the last accepted change of stock
PV = 15  # 1.0 when the baseline is provisional (bit 31 of n_updates in the record)
JR = 16  # 1.0 when flag_run counts level jumps (bit 30 of n_updates in the record)
RP = 17  # 1.0 when the item's last accepted full state repeated its state (bit 29 of n_updates)
DB = 18  # 1.0 when a strong hint came with the last accepted change of stock (bit 28 of n_updates)
LF = 19  # 1.0 when the last accepted update carried all four numbers (bit 27 of n_updates)
N_STATE = 20
N_FLAGS = 5  # the flag columns PV..LF, consecutive
N_ENV: Final = len(RULE_VARIABLES)  # the rule environment: one slot per variable


@njit(cache=True, nogil=True)
def _f4(x):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    return np.float64(np.float32(x))


@njit(cache=True, nogil=True)
def _initial(m, t, g, out):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    out[:] = 0.0
    scale = max(max(m[2], m[1]), 1.0)
    out[S], out[MN], out[MX], out[P] = m[0], m[1], m[2], m[3]
    out[REF] = _f4(max(m[3], 1e-4))
    out[UD] = _f4(max(0.05 * scale, 1.0))
    out[UR] = _f4(max(0.7 * max(m[2] - m[1], 0.3 * scale), 1.0))
    out[UL] = _f4(m[0])
    out[LT], out[GRP] = t, g
    out[LEFT] = np.nan


@njit(cache=True, nogil=True)
def _features(b, m, t, med, spread, x):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    s0, s1 = max(b[S], 0.0), max(m[0], 0.0)
    scale = max(max(b[MX], b[MN]), 1.0)
    c = 0.05 * scale + 1.0
    d = s1 - s0
    lp = np.log(max(m[3], 1e-4))
    x[0] = np.log1p(s1 / scale)
    x[1] = np.log((s1 + c) / (s0 + c))
    x[2] = np.log1p(max(-d, 0.0) / max(b[UD], 0.5))
    x[3] = np.log1p(max(d, 0.0) / max(b[UR], 0.5))
    x[4] = lp - np.log(max(b[P], 1e-4))
    x[5] = lp - np.log(max(b[REF], 1e-4))
    x[6] = 0.0 if np.isnan(med) else (lp - med) / spread
    x[7] = np.log((max(m[1], 0.0) + 1.0) / (max(b[MN], 0.0) + 1.0))
    x[8] = np.log((max(m[2], 0.0) + 1.0) / (max(b[MX], 0.0) + 1.0))
    x[9] = max(m[1], 0.0) / max(m[2], 1.0)
    gap = t - b[LT]
    x[10] = np.log((max(gap, 0.0) + 60.0) / (b[UG] + 60.0)) if (not np.isnan(gap) and b[UG] > 0) else 0.0
    for j in range(x.shape[0]):
        v = x[j]
        x[j] = 0.0 if np.isnan(v) else min(max(v, -12.0), 12.0)


@njit(cache=True, nogil=True)
def _judge(x, mean, scl, lo, hi, width, weight, row32, walk, forest, offset, inside):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    """(score, hull penalty) of the change features ``x``: the forest minus the penalty, shifted
    up by ``inside`` when the change lies inside the hull of normal motion."""
    nf = mean.shape[0]
    pen = 0.0
    for j in range(nf):
        row32[j] = np.float32((x[j] - mean[j]) / scl[j])
        pen += weight[j] * max(max(x[j] - hi[j], lo[j] - x[j]), 0.0) / width[j]
    s = -offset - 2.0 ** _score_one(row32, walk, forest) - pen
    return (s + inside if pen <= 0.0 else s), pen


@njit(cache=True, nogil=True)
def _hull_penalty(x, lo, hi, width, weight):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    pen = 0.0
    for j in range(x.shape[0]):
        pen += weight[j] * max(max(x[j] - hi[j], lo[j] - x[j]), 0.0) / width[j]
    return pen


@njit(cache=True, nogil=True)
def _advance(b, m, t, g, a, rebase, out):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    out[:] = b
    alpha = max(0.1, 1.0 / (b[NU] + 2.0))
    drop, rise = max(b[S] - m[0], 0.0), max(m[0] - b[S], 0.0)
    if a and drop > 0:
        out[UD] = _f4(b[UD] + alpha * (drop - b[UD]))
    # a receipt, not a customer return (change_features.RETURN_DROPS, RECEIPT_SHARE)
    if a and rise > 0 and (rise > 3.0 * b[UD] or rise >= 0.5 * b[UR]):
        out[UR] = _f4(b[UR] + alpha * (rise - b[UR]))
    ref = max(b[REF], 1e-4)
    out[REF] = _f4(max(m[3], ref * 0.99) if (a and m[3] > 0) else ref)
    if rebase and b[PV] and m[3] > 0:  # confirming a new item: its price, not the flagged one's
        out[REF] = _f4(max(m[3], 1e-4))
    gap = t - b[LT]
    if a and not np.isnan(gap) and gap >= 0:
        out[UG] = _f4(b[UG] + 0.2 * (gap - b[UG]) if b[UG] > 0 else gap)
    if a:
        if m[0] != b[S]:
            out[LEFT] = b[S]
        out[UL] = _f4(b[UL] + 0.1 * (m[0] - b[UL]))
        out[LT] = t if np.isnan(b[LT]) else (b[LT] if np.isnan(t) else max(b[LT], t))
        out[S], out[MN], out[MX], out[P], out[GRP] = m[0], m[1], m[2], m[3], g
        out[NU], out[FR] = b[NU] + 1, 0.0
    else:
        out[NF], out[FR] = min(b[NF] + 1, 65535.0), min(b[FR] + 1, 65535.0)


@njit(cache=True, nogil=True)
def _load(local, k, b):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    """Record ``k`` of a STATE_DTYPE array into the float64 row ``b`` (columns in field order)."""
    r = local[k]
    b[S], b[MN], b[MX], b[P] = r.stock, r.min, r.max, r.price
    b[REF], b[UD], b[UR], b[UL], b[UG] = r.ref_price, r.usual_drop, r.usual_rise, r.usual_level, r.usual_gap
    b[LT], b[GRP], b[NU], b[NF], b[FR] = r.last_time, r.group, r.n_updates, r.n_flagged, r.flag_run
    b[LEFT] = r.left_stock
    b[NU] = r.n_updates & np.uint32(0x07FFFFFF)
    for j in range(N_FLAGS):  # PV, JR, RP, DB, LF: bits 31 down to 27
        b[PV + j] = 1.0 if (r.n_updates >> np.uint32(31 - j)) & np.uint32(1) else 0.0


@njit(cache=True, nogil=True)
def _flags(b):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    """The flag bits of the record's ``n_updates`` (31 down to 27) from the row's flag columns."""
    f = np.uint32(0)
    for j in range(N_FLAGS):
        if b[PV + j] != 0.0:
            f |= np.uint32(1) << np.uint32(31 - j)
    return f


@njit(cache=True, nogil=True)
def _store(b, local, k):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    """The float64 row ``b`` into record ``k`` (float32 and integer fields take their type)."""
    r = local[k]
    r.stock, r.min, r.max, r.price = b[S], b[MN], b[MX], b[P]
    r.ref_price, r.usual_drop, r.usual_rise = np.float32(b[REF]), np.float32(b[UD]), np.float32(b[UR])
    r.usual_level, r.usual_gap, r.last_time = np.float32(b[UL]), np.float32(b[UG]), b[LT]
    r.group, r.n_updates = np.uint32(b[GRP]), np.uint32(b[NU]) | _flags(b)
    r.n_flagged, r.flag_run = np.uint16(b[NF]), np.uint16(b[FR])
    r.left_stock = b[LEFT]


@njit(cache=True, nogil=True)
def _env(env, m, b, t, kn, partial):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    """The rules' variables (:data:`detection.rules.RULE_VARIABLES` order) of the merged update ``m``
    against the record ``b`` (the previous-state variables are NaN for an item without one);
    ``partial``: the update as sent lacks one of the four numbers."""
    env[0], env[1], env[2], env[3] = m[0], m[1], m[2], m[3]
    for j in range(4):
        env[4 + j] = b[j] if kn else np.nan
    env[8] = b[LT] - t if kn else np.nan
    env[9] = 1.0 if (kn and m[0] == b[S] and m[1] == b[MN] and m[2] == b[MX] and m[3] == b[P]) else 0.0
    env[10] = b[LEFT] if kn else np.nan
    env[11] = m[0] - b[S] if kn else np.nan
    env[12] = b[UD] if kn else np.nan
    env[13] = b[UR] if kn else np.nan
    env[14] = b[RP] if kn else np.nan
    env[15] = 0.0 if partial else 1.0
    env[16] = b[FR] if kn else np.nan
    env[17] = b[LF] if kn else np.nan


@njit(cache=True, nogil=True)
def decide_rows(u, upd, grp, local, known, model, out_f, out_bits, out_x, out_base, touched, lazy) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
    """Decide every row in order; ``out_f`` columns: score, severity, anomaly, ok, stock, min, max,
    price, peer median. ``model`` is the tuple built by ``ChangeDetector._kernel_model``. ``local``
    holds the items' records (STATE_DTYPE, row ``u[i]`` for update ``i``): updated in place.

    ``lazy`` (only when no score inside the hull can fall below the threshold): a change inside the
    hull that fires no alerting rule is normal whatever the forest says, so its forest walk (most of
    a row's cost) is left to :func:`score_pending`; its score and severity stay NaN (ok = 1)."""
    (codes, med_a, spr_a, mean, scl, lo, hi, width, weight, forest, offset, threshold,
     clauses, n_rules, floors, alert_mask, q, tail, slope, blog, rebase_run, inside, state_shift, jump_mask,
     jump_fields, doubt_mask) = model  # fmt: skip
    nf = mean.shape[0]
    m = np.empty(4)
    b = np.empty(N_STATE)
    nxt = np.empty(N_STATE)
    row32 = np.empty(nf + 1, np.float32)
    row32[nf] = -np.inf  # the leaves' sentinel feature
    walk = np.empty(forest[3], np.int64)
    env = np.empty(N_ENV)
    ok = np.empty(n_rules, np.bool_)
    alt = np.empty(N_STATE)
    xa = np.empty(nf)
    for i in range(u.shape[0]):
        k = u[i]
        kn = known[k]
        if kn:
            _load(local, k, b)
        incomplete, partial = False, False
        for j in range(4):
            v = upd[i, j]
            m[j] = v if not np.isnan(v) else (b[j] if kn else np.nan)
            incomplete |= np.isnan(m[j])
            partial |= np.isnan(v)
        out_f[i, 0], out_f[i, 3] = np.nan, 0.0
        out_f[i, 4:8] = m
        if incomplete:
            continue
        t = upd[i, 4]
        g = grp[i] if grp[i] != 0 else (b[GRP] if kn else 0.0)
        if not kn:
            _initial(m, t, g, b)
        at = min(np.searchsorted(codes, g), codes.shape[0] - 1) if codes.shape[0] else 0
        hit = codes.shape[0] > 0 and codes[at] == g and g != 0
        med, spread = (med_a[at], spr_a[at]) if hit else (np.nan, 1.0)
        x = out_x[i]
        fresh = False
        if kn and b[PV] != 0.0:
            # A provisional baseline (a new item's flagged first state) is not trusted: an update
            # that looks right as the item's first state replaces it instead of being judged by it.
            _initial(m, t, g, alt)
            _features(alt, m, t, med, spread, x)
            s, pen = _judge(x, mean, scl, lo, hi, width, weight, row32, walk, forest, offset, inside)
            _env(env, m, alt, t, False, partial)
            bits = rule_bits(env, clauses, ok)
            if (s + state_shift >= threshold or pen <= 0.0) and (bits & alert_mask) == 0:
                alt[NF], alt[RP] = b[NF], b[RP]
                b[:] = alt
                fresh = True
        pending = False
        if not fresh:
            _features(b, m, t, med, spread, x)
            _env(env, m, b, t, kn, partial)
            bits = rule_bits(env, clauses, ok)
            pen = _hull_penalty(x, lo, hi, width, weight)
            pending = lazy and pen <= 0.0 and (bits & alert_mask) == 0
            if pending:
                s = np.nan  # normal: scored by score_pending if an output needs it
            else:
                # inside the hull of normal motion: ranked after every change beyond it (kept in order)
                s, pen = _judge(x, mean, scl, lo, hi, width, weight, row32, walk, forest, offset, inside)
        alerting = (bits & alert_mask) != 0
        first = fresh or not kn
        # a flag beyond the hull at the default budget, whatever the model's: the one the state follows
        beyond = not pending and s + state_shift < threshold and pen > 0.0
        if beyond and not alerting and not first and not np.isnan(b[LEFT]) and b[LEFT] != b[S]:
            # A normal move from the stock before the last change, which was itself beyond normal
            # motion or is contradicted by the previous report too (flagged; a move on from that
            # stock, not a return to it, which is how a replay looks) or came with a strong hint
            # against it: that change was the outlier (a missed error). Judge from before it.
            alt[:] = b
            alt[S], alt[LEFT], alt[DB] = b[LEFT], np.nan, 0.0
            _features(alt, b[:4], np.nan, med, spread, xa)  # the last change, from before it
            # a rise past the max level, which orders fill up to: no receipt explains it
            odd_rise = b[S] > b[LEFT] and b[S] > b[MX]
            doubted = (b[FR] >= 1.0 or odd_rise or b[DB] != 0.0) and m[0] != b[LEFT]
            if doubted or _hull_penalty(xa, lo, hi, width, weight) > 0.0:
                _features(alt, m, t, med, spread, xa)
                s_alt, pen_alt = _judge(
                    xa, mean, scl, lo, hi, width, weight, row32, walk, forest, offset, inside
                )
                if pen_alt <= 0.0:
                    s, beyond = s_alt, False
                    b[:] = alt
                    x[:] = xa
        flagged = (not pending and s < threshold) or alerting
        # the budget changes alerts, never the state: it is the same for every budget
        guard = beyond or alerting
        # only level jumps alert: a run of them re-baselines as a run of model flags does
        jump = alerting and (bits & alert_mask & ~jump_mask) == 0
        run = b[FR] if jump == (b[JR] != 0.0) else 0.0  # a run is of level jumps or of other flags
        rebase = guard and not first and run >= rebase_run - 1 and (jump or not alerting)
        accepted = (not guard) or first or rebase
        out_base[i, :] = b[:N_FIELDS]
        out_base[i, NU] = b[NU] + float(_flags(b))  # as in the record
        _advance(b, m, t, g, accepted, rebase, nxt)
        if accepted:
            nxt[LF] = 0.0 if partial else 1.0
        if accepted and m[0] != b[S]:  # a new change of stock: doubted when a strong hint came with it
            nxt[DB] = 1.0 if (bits & doubt_mask) != 0 else 0.0
        # does this item's feed send full states that repeat its state? A full state after flagged
        # updates brings the motion they hid: a correction, no evidence either way
        if accepted and not partial and (env[9] == 1.0 or b[FR] == 0.0):
            nxt[RP] = env[9]
        carries = False  # the update brings a number the level jumps read (evidence for or against)
        for j in range(4):
            carries |= jump_fields[j] != 0.0 and not np.isnan(upd[i, j])
        if not accepted:
            nxt[FR], nxt[JR] = min(run + 1.0, 65535.0), 1.0 if jump else 0.0
        elif not guard and b[JR] != 0.0 and not carries:
            nxt[FR], nxt[JR] = b[FR], 1.0  # an update without the jump's numbers keeps its run
        else:
            nxt[JR] = 0.0
            if rebase and jump and m[3] > 0:  # the new level is the truth: so is its regular price
                nxt[REF] = _f4(max(m[3], 1e-4))
        if first:  # a new item's flagged first state is provisional; a replacing one is trusted
            nxt[PV] = 1.0 if (guard and not fresh) else 0.0
        elif rebase or not (guard or partial):
            nxt[PV] = 0.0  # a complete state that agrees with the provisional one confirms it
        _store(nxt, local, k)
        known[k], touched[k] = True, True
        sev = (
            np.nan
            if pending
            else calibrated_severity(s, bits, flagged, q, tail, slope, blog, floors, n_rules)
        )
        out_f[i, 0], out_f[i, 1], out_f[i, 2], out_f[i, 3], out_f[i, 8] = s, sev, flagged, 1.0, med
        out_bits[i] = bits


@njit(cache=True, nogil=True)
def score_pending(model, out_f, out_bits, out_x, rows) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
    """Score and grade the rows ``decide_rows(lazy=True)`` left pending (ok = 1, NaN score) among
    ``rows``: the forest on their final change features, as ``decide_rows`` would have (normal)."""
    mean, scl, lo, hi, width, weight, forest, offset = model[3:11]
    n_rules, floors, q, tail, slope, blog, inside = (
        model[13],
        model[14],
        model[16],
        model[17],
        model[18],
        model[19],
        model[21],
    )
    nf = mean.shape[0]
    row32 = np.empty(nf + 1, np.float32)
    row32[nf] = -np.inf  # the leaves' sentinel feature
    walk = np.empty(forest[3], np.int64)
    for i in rows:
        if out_f[i, 3] == 0.0 or not np.isnan(out_f[i, 0]):
            continue
        s, _ = _judge(out_x[i], mean, scl, lo, hi, width, weight, row32, walk, forest, offset, inside)
        out_f[i, 0] = s
        out_f[i, 1] = calibrated_severity(s, out_bits[i], False, q, tail, slope, blog, floors, n_rules)
