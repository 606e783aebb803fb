"""The ``default`` detector: each update judged as a change of its item, rules beside the model.

Pipeline per batch (:meth:`ChangeDetector.decide_batch`), vectorised per *generation* (the k-th
update of an item within the batch is in generation k, so several updates of one item apply in
order while each generation is scored in one call):

1. gather each item's last accepted state from the :class:`~detection.item_state.StateTable`;
   merge the partial update onto it (an unknown item must bring all four numbers, else the row is
   rejected with :class:`~detection.updates.MissingFieldError`);
2. change features (:mod:`detection.change_features`), scaled by the ``StandardScaler`` and scored
   by the compiled ``IsolationForest``: ``score < threshold`` (0 by default) is an anomaly;
3. data-quality rules (:mod:`detection.rules`) on the same rows: a firing rule is an anomaly of
   kind ``data_quality``; calibrated severity (:mod:`detection.severity`);
4. accepted rows advance their item's state; flagged rows do not (except after
   :data:`REBASELINE_RUN` consecutive model-only flags: a lasting change becomes the new normal).

``decide_batch`` does not modify the table: it returns the new records (:class:`StateChanges`)
for the caller to apply (``table.apply``) once the batch's results are safely published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

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
from detection.compiled_forest import CompiledForest
from detection.detector_meta import DetectorMetadata
from detection.hull import Hull
from detection.item_state import STATE_DTYPE, StateRows, StateTable, group_code
from detection.peers import PeerStats
from detection.rules import RuleSet
from detection.severity import SeverityScale
from detection.updates import MissingFieldError, UpdateBatch

__all__ = ["REBASELINE_RUN", "ChangeDetector", "StateChanges", "baseline_table"]

FloatArray = npt.NDArray[np.float64]
REBASELINE_RUN: Final = 3


@dataclass(frozen=True, slots=True, eq=False)
class StateChanges:
    """New records of the items a batch touched: apply with :meth:`apply_to`, log with :meth:`packed`."""

    item_ids: list[str]
    records: StateRows

    def apply_to(self, table: StateTable) -> None:
        if self.item_ids:
            table.scatter(self.item_ids, self.records)

    def packed(self) -> list[tuple[str, bytes]]:
        """(item id, 80-byte record) pairs, e.g. for a compacted changelog topic."""
        return [(i, self.records[k : k + 1].tobytes()) for k, i in enumerate(self.item_ids)]


class ChangeDetector:
    """Scaler + forest + compiled scorer over change features, with rules, peers and calibration."""

    __slots__ = ("_compiled", "_forest", "_hull", "_mean", "_metadata", "_peers", "_rules", "_scale",
                 "_scaler", "_severity", "_threshold")  # fmt: skip

    def __init__(self, *, scaler: Any, forest: Any, metadata: DetectorMetadata, compiled: CompiledForest | None = None) -> None:  # fmt: skip
        if tuple(metadata.feature_names) != CHANGE_FEATURE_NAMES:
            raise ValueError(f"model features {metadata.feature_names} do not match {CHANGE_FEATURE_NAMES}")
        self._scaler, self._forest, self._metadata = scaler, forest, metadata
        self._compiled = compiled or CompiledForest.from_sklearn(forest)
        if self._compiled.n_features != len(CHANGE_FEATURE_NAMES):
            raise ValueError("the forest was not fitted on the change features")
        self._mean = np.asarray(scaler.mean_, dtype=np.float64)
        self._scale = np.asarray(scaler.scale_, dtype=np.float64)
        self._threshold = float(metadata.threshold)
        self._hull = Hull(metadata.hull_low, metadata.hull_high, metadata.hull_weight)
        self._rules = RuleSet(metadata.rules)
        self._peers = PeerStats(metadata.peer_groups)
        self._severity = SeverityScale(metadata.score_quantiles, metadata.alert_budget_per_1000 / 1000.0)

    # -- parts ---------------------------------------------------------------------------------
    scaler = property(lambda self: self._scaler, doc="The fitted ``StandardScaler``.")
    forest = property(lambda self: self._forest, doc="The fitted ``IsolationForest``.")

    @property
    def metadata(self) -> DetectorMetadata:
        return self._metadata

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def version(self) -> str | None:
        return self._metadata.version

    @property
    def rules(self) -> RuleSet:
        return self._rules

    def with_version(self, version: str | None) -> ChangeDetector:
        meta = self._metadata.model_copy(update={"version": version})
        return ChangeDetector(
            scaler=self._scaler, forest=self._forest, metadata=meta, compiled=self._compiled
        )

    def __repr__(self) -> str:
        m = self._metadata
        return f"ChangeDetector(version={m.version!r}, n_samples={m.n_samples}, budget={m.alert_budget_per_1000}/1000)"

    # -- scoring -------------------------------------------------------------------------------
    def score(self, features: npt.ArrayLike) -> FloatArray:
        """The forest's ``decision_function`` of the scaled change features minus the hull penalty
        (:class:`detection.hull.Hull`): below the threshold = anomalous."""
        x = np.asarray(features, dtype=np.float64).reshape(-1, len(CHANGE_FEATURE_NAMES))
        return self._compiled.decision_function((x - self._mean) / self._scale) - self._hull.penalty(x)

    def baseline(self, snapshot: UpdateBatch) -> StateTable:
        """A state table holding every complete item of a snapshot (see :func:`baseline_table`)."""
        return baseline_table(snapshot)

    def decide_batch(self, table: StateTable, batch: UpdateBatch) -> tuple[ChangeDecisions, StateChanges]:
        """Decide a batch in stream order (see the module docstring); ``table`` is not modified."""
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
            median, spread = self._peers.lookup(m.group)
            x = change_features(base, m, median, spread)
            s = self.score(x)
            b = self._rules.evaluate(_rule_env(base, m, known), sel.size)
            flagged = ((s < self._threshold) | (b != 0)) & ok
            rebase = (base["flag_run"] >= REBASELINE_RUN - 1) & (b == 0)
            accepted = ok & (~flagged | new_item | rebase)
            nxt = advance(base, m, accepted)
            local[us[ok]] = nxt[ok]
            known_u[us[ok]] = True
            touched[us[ok]] = True
            scores[sel] = np.where(ok, s, np.nan)
            bits[sel], feats[sel], anomaly[sel], base_all[sel] = np.where(ok, b, 0), x, flagged, base
            sev[sel] = np.where(ok, self._severity.severity(s, b != 0), 0.0)
            new_values[sel] = np.stack([m.stock, m.min, m.max, m.price], axis=1)
            peer_med[sel] = median
        sev = np.where(anomaly, np.maximum(sev, 50.0), np.minimum(sev, 49.9))
        decisions = ChangeDecisions(scores, anomaly, sev, bits, feats, self._threshold, rejected,
                                    base_all, new_values, peer_med, self._rules)  # fmt: skip
        changed = np.flatnonzero(touched)
        return decisions, StateChanges([uniq[k] for k in changed], local[changed])


def baseline_table(snapshot: UpdateBatch) -> StateTable:
    """A state table of a snapshot's complete items, with priors for their usual motion."""
    table = StateTable(capacity=len(snapshot))
    groups = _group_codes(snapshot.groups)
    empty = np.zeros(len(snapshot), STATE_DTYPE)
    raw = Merged(snapshot.stock, snapshot.min, snapshot.max, snapshot.price, snapshot.occurred_at, groups)
    m, incomplete = merge(empty, np.zeros(len(snapshot), bool), raw)
    rows = initial_states(m)
    last: dict[str, int] = {i: k for k, i in enumerate(snapshot.item_ids) if not incomplete[k]}
    keep = np.fromiter(last.values(), dtype=np.intp, count=len(last))
    table.scatter(list(last), rows[keep])
    return table


def _generations(ids: Sequence[str]) -> tuple[list[str], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Unique ids, each row's index into them, and its generation (earlier updates of its item)."""
    n = len(ids)
    first: dict[str, int] = dict.fromkeys(ids, 0)
    if len(first) == n:
        return list(ids), np.arange(n), np.zeros(n, dtype=np.intp)
    pos = {i: k for k, i in enumerate(first)}
    u = np.fromiter((pos[i] for i in ids), dtype=np.intp, count=n)
    seen = np.zeros(len(pos), dtype=np.intp)
    gen = np.empty(n, dtype=np.intp)
    for k in range(n):
        gen[k] = seen[u[k]]
        seen[u[k]] += 1
    return list(first), u, gen


def _group_codes(groups: Sequence[str | None]) -> npt.NDArray[np.uint32]:
    cache: dict[str | None, int] = {None: 0}
    out = np.empty(len(groups), dtype=np.uint32)
    for k, g in enumerate(groups):
        code = cache.get(g)
        if code is None:
            code = cache[g] = group_code(g)
        out[k] = code
    return out


def _rule_env(base: StateRows, m: Merged, known: npt.NDArray[np.bool_]) -> dict[str, FloatArray]:
    def prev(name: str) -> FloatArray:
        return np.where(known, base[name], np.nan)

    unchanged = known & (m.stock == base["stock"]) & (m.min == base["min"]) & (m.max == base["max"])
    unchanged &= m.price == base["price"]
    return {"stock": m.stock, "min": m.min, "max": m.max, "price": m.price,
            "prev_stock": prev("stock"), "prev_min": prev("min"), "prev_max": prev("max"),
            "prev_price": prev("price"), "age": prev("last_time") - m.time,
            "unchanged": unchanged.astype(np.float64)}  # fmt: skip
