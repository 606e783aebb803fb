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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from detection.change_decisions import ChangeDecisions
from detection.change_features import (
    CHANGE_FEATURE_NAMES,
    Merged,
    initial_states,
    merge,
)
from detection.compiled_forest import CompiledForest
from detection.decide_kernel import decide_rows, score_pending
from detection.detector_meta import DetectorMetadata
from detection.hull import Hull
from detection.item_state import STATE_DTYPE, StateRows, StateTable, group_code, words
from detection.peers import PeerStats
from detection.rules import RuleSet
from detection.severity import SeverityScale
from detection.updates import MissingFieldError, UpdateBatch

__all__ = ["REBASELINE_RUN", "ChangeDetector", "StateChanges", "baseline_table", "gate"]

FloatArray = npt.NDArray[np.float64]
REBASELINE_RUN: Final = 3
INSIDE_SHIFT: Final = 1.0
MAX_CACHED_GROUPS: Final = 100_000


@dataclass(frozen=True, slots=True, eq=False)
class StateChanges:
    """New records of the items a batch touched: apply with :meth:`apply_to`, log with :meth:`packed`.

    ``rows`` are the items' rows in the table the batch was decided against (-1 for items it did not
    hold yet), so applying writes the known items without looking their ids up again.
    """

    rows: npt.NDArray[np.intp]
    records: StateRows
    _ids: Sequence[str]
    _first: npt.NDArray[np.intp]  # per record: a batch row of its item (its id is _ids[_first[k]])

    @classmethod
    def of(cls, table: StateTable, item_ids: Sequence[str], records: StateRows) -> StateChanges:
        """Changes of the given items (looked up in ``table``, the one the batch was decided against)."""
        return cls(table.lookup(item_ids), records, list(item_ids), np.arange(len(item_ids)))

    @property
    def item_ids(self) -> list[str]:
        ids = self._ids
        return [ids[i] for i in self._first.tolist()]

    def apply_to(self, table: StateTable) -> None:
        """Write the records (the table the batch was decided against: rows never move)."""
        known = self.rows >= 0
        if known.all():
            table.write_rows(self.rows, self.records)
            return
        table.write_rows(self.rows[known], self.records[known])
        new = np.flatnonzero(~known)
        table.scatter([self._ids[i] for i in self._first[new].tolist()], self.records[new])

    def packed(self) -> list[tuple[str, bytes]]:
        """(item id, 80-byte record) pairs, e.g. for a compacted changelog topic."""
        return [(i, self.records[k : k + 1].tobytes()) for k, i in enumerate(self.item_ids)]


class ChangeDetector:
    """Scaler + forest + compiled scorer over change features, with rules, peers and calibration."""

    __slots__ = ("_compiled", "_forest", "_groups", "_hull", "_kernel", "_lazy_ok", "_mean", "_metadata", "_peers",
                 "_rules", "_scale", "_scaler", "_severity", "_threshold")  # fmt: skip

    def __init__(self, *, scaler: Any, forest: Any, metadata: DetectorMetadata, compiled: CompiledForest | None = None) -> None:  # fmt: skip
        mean, scale = np.asarray(scaler.mean_, dtype=np.float64), np.asarray(scaler.scale_, dtype=np.float64)
        self._init(
            scaler, forest, metadata, compiled or CompiledForest.from_sklearn(forest), mean=mean, scale=scale
        )

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, npt.NDArray[Any]], metadata: DetectorMetadata
    ) -> ChangeDetector:
        """The detector from its serving arrays (:meth:`to_arrays`, checked) and metadata; no sklearn
        objects. Raises ``ValueError`` (incl. ``RuleError``) when the two do not make a detector."""
        compiled = CompiledForest.from_arrays(arrays)
        detector = object.__new__(cls)
        mean = np.asarray(arrays["mean"], dtype=np.float64)
        scale = np.asarray(arrays["scale"], dtype=np.float64)
        detector._init(None, None, metadata, compiled, mean=mean, scale=scale)
        return detector

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """Scaler and forest as plain arrays (:mod:`detection.scorer_arrays`); the rest is metadata."""
        return {"mean": self._mean, "scale": self._scale, **self._compiled.to_arrays()}

    def _init(self, scaler: Any, forest: Any, metadata: DetectorMetadata, compiled: CompiledForest, *,
              mean: FloatArray, scale: FloatArray) -> None:  # fmt: skip
        if tuple(metadata.feature_names) != CHANGE_FEATURE_NAMES:
            raise ValueError(f"model features {metadata.feature_names} do not match {CHANGE_FEATURE_NAMES}")
        if compiled.n_features != len(CHANGE_FEATURE_NAMES):
            raise ValueError("the forest was not fitted on the change features")
        self._scaler, self._forest, self._metadata, self._compiled = scaler, forest, metadata, compiled
        self._mean, self._scale = mean, scale
        self._groups: dict[str | None, float] = {None: 0.0}
        self._threshold = float(metadata.threshold)
        self._hull = Hull(metadata.hull_low, metadata.hull_high, metadata.hull_weight)
        self._rules = RuleSet(metadata.rules)
        self._peers = PeerStats(metadata.peer_groups)
        self._severity = SeverityScale(metadata.score_quantiles, metadata.alert_budget_per_1000 / 1000.0)
        rules = self._rules.clause_matrix()
        self._kernel = (*self._peers.arrays(), self._mean, self._scale, *self._hull.arrays(),
                        self._compiled._kernel_args, self._compiled.offset, self._threshold, rules,
                        len(self._rules.names), self._rules.floors, np.uint32(self._rules.alert_mask),
                        *self._severity.arrays(), float(REBASELINE_RUN), INSIDE_SHIFT, self.state_shift,
                        np.uint32(self._rules.rebase_mask), self._rules.rebase_fields,
                        np.uint32(self._rules.doubt_mask))  # fmt: skip
        # inside the hull a score is at least -offset - 1 + INSIDE_SHIFT (score_samples >= -1): when
        # that clears the threshold, a normal change there needs its forest walk only for an output
        bound = -self._compiled.offset - 1.0 + INSIDE_SHIFT - 1e-9
        self._lazy_ok = self._compiled.bounded and self._threshold < bound

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
    def state_shift(self) -> float:
        """Added to a score, it is the score at the default budget: the item state follows flags of
        that score beyond the hull, whatever the model's budget (so the budget changes only alerts)."""
        state = self._metadata.state_offset
        return 0.0 if state is None else float(self._compiled.offset) - state

    @property
    def version(self) -> str | None:
        return self._metadata.version

    @property
    def rules(self) -> RuleSet:
        return self._rules

    @property
    def hull(self) -> Hull:
        return self._hull

    @property
    def peers(self) -> PeerStats:
        return self._peers

    @property
    def severity_scale(self) -> SeverityScale:
        return self._severity

    def with_version(self, version: str | None) -> ChangeDetector:
        new = object.__new__(ChangeDetector)
        meta = self._metadata.model_copy(update={"version": version})
        new._init(self._scaler, self._forest, meta, self._compiled, mean=self._mean, scale=self._scale)
        return new

    def __repr__(self) -> str:
        m = self._metadata
        return f"ChangeDetector(version={m.version!r}, n_samples={m.n_samples}, budget={m.alert_budget_per_1000}/1000)"

    # -- scoring -------------------------------------------------------------------------------
    def score(self, features: npt.ArrayLike) -> FloatArray:
        """The forest's ``decision_function`` of the scaled change features minus the hull penalty
        (:class:`detection.hull.Hull`), raised by :data:`INSIDE_SHIFT` inside the hull (:func:`gate`):
        below the threshold = anomalous."""
        x = np.asarray(features, dtype=np.float64).reshape(-1, len(CHANGE_FEATURE_NAMES))
        pen = self._hull.penalty(x)
        return gate(self._compiled.decision_function((x - self._mean) / self._scale) - pen, pen)

    def baseline(self, snapshot: UpdateBatch) -> StateTable:
        """A state table holding every complete item of a snapshot (see :func:`baseline_table`)."""
        return baseline_table(snapshot)

    def decide_batch(
        self, table: StateTable, batch: UpdateBatch, *, lazy: bool = False
    ) -> tuple[ChangeDecisions, StateChanges]:
        """Decide a batch in stream order (see the module docstring); ``table`` is not modified
        (``lazy``: see :meth:`decide_local`)."""
        keys = table.lookup(batch.item_ids)  # the item's table row, or -(1 + j) for new item j
        new = np.flatnonzero(keys < 0)
        if new.size:
            slot: dict[str, int] = {}
            ids = batch.item_ids
            keys[new] = [-1 - slot.setdefault(ids[i], len(slot)) for i in new.tolist()]
        uniq, first, u = np.unique(keys, return_index=True, return_inverse=True)
        known = uniq >= 0
        n_new = int(uniq.size - np.count_nonzero(known))  # new items sort first (negative keys)
        local = table.gather(uniq[n_new:], lead=n_new)
        decisions, touched = self.decide_local(batch, u.reshape(-1), local, known, lazy=lazy)
        rows = np.where(known, uniq, -1)
        if not touched.all():
            rows, first = rows[touched], first[touched]
            local = words(local)[touched].reshape(-1).view(STATE_DTYPE)
        return decisions, StateChanges(rows, local, batch.item_ids, first)

    def decide_local(
        self,
        batch: UpdateBatch,
        u: npt.NDArray[np.intp],
        local: StateRows,
        known: npt.NDArray[np.bool_],
        *,
        lazy: bool = False,
    ) -> tuple[ChangeDecisions, npt.NDArray[np.bool_]]:
        """:meth:`decide_batch` on states already gathered: update ``i`` is of item ``u[i]``, whose
        record is ``local[u[i]]`` when ``known[u[i]]``. ``local`` and ``known`` are updated in place
        (the items' new records); returns the decisions and which items changed.

        ``lazy``: the scores and severities of normal changes inside the hull are NaN until
        :meth:`ChangeDecisions.complete` asks for them (the hot path publishes few of them); every
        decision, flag and state is the same either way."""
        n = len(batch)
        upd = np.stack([batch.stock, batch.min, batch.max, batch.price, batch.occurred_at], axis=1)
        grp = self._group_codes(batch.groups)
        out_f = np.zeros((n, 9))
        out_bits = np.zeros(n, np.uint32)
        out_x = np.zeros((n, len(CHANGE_FEATURE_NAMES)))
        out_base = np.zeros((n, len(_FIELDS)))
        touched = np.zeros(local.shape[0], dtype=bool)
        decide_rows(u, upd, grp, local, known, self._kernel, out_f, out_bits, out_x, out_base, touched,
                    lazy and self._lazy_ok)  # fmt: skip
        ok = out_f[:, 3] != 0
        rejected = (
            {}
            if ok.all()
            else {int(i): _missing(batch.item_ids[int(i)], out_f[i, 4:8]) for i in np.flatnonzero(~ok)}
        )
        decisions = ChangeDecisions(out_f[:, 0], out_f[:, 2] != 0, out_f[:, 1], out_bits, out_x, self._threshold,
                                    rejected, out_base, out_f[:, 4:8], out_f[:, 8], self._rules,
                                    partial(score_pending, self._kernel, out_f, out_bits, out_x) if lazy else None)  # fmt: skip
        return decisions, touched

    def _group_codes(self, groups: Sequence[str | None]) -> FloatArray:
        """Peer-group codes as float64 (cached per value: a stream has few distinct groups)."""
        cache = self._groups
        try:
            return np.fromiter(map(cache.__getitem__, groups), dtype=np.float64, count=len(groups))
        except KeyError:
            if len(cache) > MAX_CACHED_GROUPS:
                cache.clear()
            cache.update((g, float(group_code(g))) for g in set(groups) if g not in cache)
            return np.fromiter(map(cache.__getitem__, groups), dtype=np.float64, count=len(groups))


def gate(scores: FloatArray, penalty: FloatArray) -> FloatArray:
    """Scores of changes inside the hull (penalty 0) raised by :data:`INSIDE_SHIFT`.

    ``score_samples`` is negative, so after the shift every change inside the hull of normal motion
    scores above every change beyond it, and inside it the forest still orders the changes. The
    alert budget's offset (:func:`detection.detector_training.budget_offset`) cuts this order:
    beyond the hull only, unless the budget exceeds the share of normal motion beyond it."""
    return np.where(penalty > 0.0, scores, scores + INSIDE_SHIFT)


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


_FIELDS: Final = tuple(STATE_DTYPE.names or ())
_REQUIRED: Final = ("stock_quantity", "min_stock_level", "max_stock_level", "price")


def _missing(item_id: str, merged: FloatArray) -> MissingFieldError:
    return MissingFieldError(
        item_id, [f for f, v in zip(_REQUIRED, merged.tolist(), strict=True) if math.isnan(v)]
    )


def _group_codes(groups: Sequence[str | None]) -> npt.NDArray[np.uint32]:
    n = len(groups)
    if groups.count(None) == n:
        return np.zeros(n, dtype=np.uint32)
    codes = {g: group_code(g) for g in set(groups)}
    return np.fromiter(map(codes.__getitem__, groups), dtype=np.uint32, count=n)
