"""Decisions of the ``default`` detector for one batch: arrays for the hot path, words on demand."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from detection.change_reasons import reasons_of_row, reasons_of_rows
from detection.item_state import STATE_DTYPE
from detection.rules import RuleSet
from detection.severity import Level, level_of, levels_of
from detection.updates import MissingFieldError

__all__ = ["ChangeDecisions", "Kind", "Words"]

FloatArray = npt.NDArray[np.float64]
_FIELDS: Final = tuple(STATE_DTYPE.names or ())
_MAX_SHOWN: Final = 4  # reasons an event carries
Kind = Literal["none", "model", "data_quality", "missing_field"]
Words = tuple[Level, tuple[str, ...], Kind, tuple[str, ...]]  # level, reasons, kind, rules fired
_NOTHING: Final[tuple[list[str], list[str]]] = ([], [])


@dataclass(frozen=True, slots=True, eq=False)
class ChangeDecisions:
    """Row ``i`` = update ``i`` of the batch.

    ``scores`` follow scikit-learn's sign (below ``threshold`` = anomalous by the model);
    ``severity_score`` is the calibrated 0-100 value; ``rule_bits`` has bit ``k`` set when rule ``k``
    fired (an alerting rule makes the row an anomaly of kind ``data_quality`` whatever the score; a
    hint only raises its severity). ``rejected`` maps
    rows that could not be scored to their error (dead letter, reason ``missing_field``); such rows
    have ``is_anomaly`` False and NaN scores.
    """

    scores: FloatArray
    is_anomaly: npt.NDArray[np.bool_]
    severity_score: FloatArray
    rule_bits: npt.NDArray[np.uint32]
    features: FloatArray
    threshold: float
    rejected: dict[int, MissingFieldError]
    # context for reasons: the baseline each row was judged against and the merged new numbers
    baseline: FloatArray  # (n, 15): the STATE_DTYPE fields in order
    new_values: FloatArray  # (n, 4): stock, min, max, price
    peer_median: FloatArray
    rules: RuleSet
    # scores the rows a lazy decision left pending (``ChangeDetector.decide_local(lazy=True)``)
    finish: Callable[[npt.NDArray[np.intp]], None] | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def complete(self, rows: npt.NDArray[np.intp]) -> None:
        """Fill in ``scores`` and ``severity_score`` of ``rows`` if a lazy decision left them NaN."""
        if self.finish is not None and len(rows):
            self.finish(np.asarray(rows, np.intp).reshape(-1))

    @property
    def anomaly_indices(self) -> npt.NDArray[np.intp]:
        return np.flatnonzero(self.is_anomaly)

    def kind(self, i: int) -> Kind:
        if i in self.rejected:
            return "missing_field"
        if self.rule_bits[i] & self.rules.alert_mask:
            return "data_quality"
        return "model" if self.is_anomaly[i] else "none"

    def level(self, i: int) -> Level:
        """none / low / medium / high / critical, from the severity score."""
        return level_of(float(self.severity_score[i]), bool(self.is_anomaly[i]))

    def severity(self, i: int) -> Level:
        """The level (as the seed's ``Decisions.severity``), from the calibrated severity score."""
        return self.level(i)

    def rules_fired(self, i: int) -> tuple[str, ...]:
        return self.rules.fired(int(self.rule_bits[i]))

    def reasons(self, i: int) -> tuple[str, ...]:
        """The alerting rules' descriptions first, then up to three reasons from the item's history
        and peers, then the hints that fired, then context (the update gap), which never explains an
        alert on its own."""
        if not self.is_anomaly[i]:
            return ()
        row = (self.features[i].tolist(), self.baseline[i].tolist(), self.new_values[i].tolist())
        return self._reasons(int(self.rule_bits[i]), *row, float(self.peer_median[i]))

    def words(self, rows: Sequence[int]) -> list[Words]:
        """``(level, reasons, kind, rules_fired)`` of each of ``rows``: what :meth:`level`,
        :meth:`reasons`, :meth:`kind` and :meth:`rules_fired` say, each array converted once and the
        reasons' numeric part (which concerns are far, their ranking) found for all rows at once."""
        at = np.asarray(rows, np.intp).reshape(-1)
        flags, bits = self.is_anomaly[at].tolist(), self.rule_bits[at].tolist()
        levels = levels_of(self.severity_score[at], self.is_anomaly[at])
        rules, rejected = self.rules, self.rejected
        mask = rules.alert_mask
        # few distinct bitmasks a batch: each worded once
        ruled = {b: (rules.describe(b & mask), rules.describe(b & ~mask), rules.fired(b)) for b in set(bits)}
        room = {b: _MAX_SHOWN - len(alerts) - len(hints) for b, (alerts, hints, _) in ruled.items()}
        asked = [j for j, flag in enumerate(flags) if flag and room[bits[j]] > 0]  # rows the history explains
        found: list[tuple[list[str], list[str]]] = [_NOTHING] * len(flags)
        for j, said in zip(
            asked, self._history_reasons(at[asked], [room[bits[j]] for j in asked]), strict=True
        ):
            found[j] = said
        out: list[Words] = []
        for j, i in enumerate(rows):
            flag, b = flags[j], bits[j]
            alerts, hints, fired = ruled[b]
            kind: Kind = (
                "missing_field"
                if i in rejected
                else "data_quality"
                if b & mask
                else "model"
                if flag
                else "none"
            )
            out.append((levels[j], _compose(alerts, hints, *found[j]) if flag else (), kind, fired))
        return out

    def _history_reasons(
        self, at: npt.NDArray[np.intp], limits: list[int]
    ) -> list[tuple[list[str], list[str]]]:
        if not limits:
            return []
        return reasons_of_rows(
            self.features[at], self.baseline[at], self.new_values[at], self.peer_median[at], limits
        )

    def _reasons(
        self, bits: int, features: list[float], baseline: list[float], new: list[float], peer: float
    ) -> tuple[str, ...]:
        mask = self.rules.alert_mask
        alerts, hints = self.rules.describe(bits & mask), self.rules.describe(bits & ~mask)
        room = _MAX_SHOWN - len(alerts) - len(hints)  # rules first: the history's reasons fill what is left
        explaining: list[str] = []
        context: list[str] = []
        if room > 0:
            by_name = dict(zip(_FIELDS, baseline, strict=True))  # a record's fields, by name
            explaining, context = reasons_of_row(features, by_name, new, peer, limit=room)
        return _compose(alerts, hints, explaining, context)


def _compose(
    alerts: tuple[str, ...], hints: tuple[str, ...], explaining: list[str], context: list[str]
) -> tuple[str, ...]:
    """The alerting rules, then the history's reasons (or a generic one when neither says
    anything), then the hints (which never alert alone), then the context (the update gap)."""
    out = list(alerts)
    out += explaining or ([] if out or hints else ["unusual combination of changes for this item"])
    return tuple((out + list(hints) + context)[:_MAX_SHOWN])
