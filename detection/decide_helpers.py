"""Parts of the decide kernel (:mod:`detection.decide_kernel`) that know no state layout: the
rules' bitmask of one update and the calibrated 0-100 severity of one score."""

# ruff: noqa: PLR0917  (numba kernels: positional scalars)
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["calibrated_severity", "interp_one", "rule_bits"]


@njit(cache=True, nogil=True)
def rule_bits(env, clauses, ok):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """Bitmask of the rules whose clauses all hold; clause = (rule, lcoef, lvar, op, rcoef, rvar).
    ``ok`` is a scratch buffer of one bool per rule."""
    n_rules = ok.shape[0]
    ok[:] = True
    for c in range(clauses.shape[0]):
        r = int(clauses[c, 0])
        lhs = clauses[c, 1] if clauses[c, 2] < 0 else clauses[c, 1] * env[int(clauses[c, 2])]
        rhs = clauses[c, 4] if clauses[c, 5] < 0 else clauses[c, 4] * env[int(clauses[c, 5])]
        op = int(clauses[c, 3])
        if np.isnan(lhs) or np.isnan(rhs):
            ok[r] = False
        elif op == 0:
            ok[r] &= lhs < rhs
        elif op == 1:
            ok[r] &= lhs <= rhs
        elif op == 2:
            ok[r] &= lhs > rhs
        elif op == 3:
            ok[r] &= lhs >= rhs
        elif op == 4:
            ok[r] &= lhs == rhs
        else:
            ok[r] &= lhs != rhs
    bits = np.uint32(0)
    for r in range(n_rules):
        if ok[r]:
            bits |= np.uint32(1) << np.uint32(r)
    return bits


@njit(cache=True, nogil=True)
def interp_one(x, xp, fp):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """``np.interp`` of one value (``xp`` ascending, ``x >= xp[0]``) without allocating."""
    n = xp.shape[0]
    if x >= xp[n - 1]:
        return fp[n - 1]
    lo, hi = 0, n - 1  # xp[lo] <= x < xp[hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if xp[mid] <= x:
            lo = mid
        else:
            hi = mid
    step = xp[hi] - xp[lo]
    return fp[lo] if step == 0.0 else fp[lo] + (x - xp[lo]) * (fp[hi] - fp[lo]) / step


@njit(cache=True, nogil=True)
def calibrated_severity(s, bits, flagged, q, tail, slope, blog, floors, n_rules):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """The calibrated 0-100 severity of score ``s`` with the rules ``bits`` fired."""
    lp = interp_one(s, q, tail) if s >= q[0] else tail[0] - slope * (q[0] - s)
    lp = max(lp, -12.0)
    sev = 50.0 * min(max(lp / blog, 0.0), 1.0) if lp >= blog else 50.0 + 50.0 * min(1.0, (blog - lp) / 3.0)
    for r in range(n_rules):  # the fired rules' own severity is the least (hints below 50)
        if bits >> np.uint32(r) & np.uint32(1):
            sev = max(sev, floors[r])
    return max(sev, 50.0) if flagged else min(sev, 49.9)
