"""track_episodes reads the event time of the flagged and the resolving rows only, and makes the
transitions and episodes it made when it read every row's (the reference below: each row's time
read up front, then the Python ``advance``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.scoring.episode_batch import EpisodeContext, track_episodes
from consumer.scoring.episodes import EPISODE_DTYPE, EpisodePolicy, Kind, Status, Transition, advance
from detection import UpdateBatch
from detection.items import EARLIEST_TIME, LATEST_TIME

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
T0 = 1_764_590_400.0
CUTS = np.array([65.0, 80.0, 95.0])  # low < 65 <= medium < 80 <= high < 95 <= critical
# a record's timestamp (ms): in range, none, zero, negative, beyond a datetime, beyond int64
STAMPS = st.sampled_from([None, 0, -1, -(2**62), 2**62, 2**63, 2**64 + 3]) | st.integers(
    int(T0 * 1000) - 10**9, int(T0 * 1000) + 10**9
)
OCCURRED = st.sampled_from([np.nan, np.inf, -np.inf]) | st.floats(T0 - 1e6, T0 + 1e6)


class _Source:
    """A record whose timestamp may be read only if its row is ``allowed``."""

    def __init__(self, offset: int, stamp: int | None, allowed: bool) -> None:
        self.topic, self.partition, self.offset, self._stamp, self.allowed = "in", 0, offset, stamp, allowed

    @property
    def timestamp(self) -> int | None:
        assert self.allowed, f"read the timestamp of row {self.offset}: neither flagged nor resolving"
        return self._stamp


@dataclass
class _Quiet:
    """A suppression cache: items it holds any for, and the rows ("r<i>" reasons) it matches."""

    items: frozenset[str]
    rows: frozenset[int]

    def for_item(self, item_id: str) -> tuple[int, ...]:
        return (1,) if item_id in self.items else ()

    def matches(self, item_id: str, reasons: list[str], now: datetime) -> object | None:
        assert now == NOW
        hit = item_id in self.items and any(int(r[1:]) in self.rows for r in reasons if r.startswith("r"))
        return object() if hit else None


def _decisions(anomalous: list[bool], severity: list[float], rejected: set[int]) -> Any:
    return SimpleNamespace(
        is_anomaly=np.array(anomalous, bool),
        severity_score=np.array(severity, np.float64),
        rejected=dict.fromkeys(rejected, ValueError("missing")),
        reasons=lambda i: (f"r{i}",) if anomalous[i] else (),
        rules_fired=lambda i: (),
    )


def _reference(
    policy: EpisodePolicy,
    prior: npt.NDArray[np.void],
    item_ids: list[str],
    occurred: npt.NDArray[np.float64],
    stamps: list[int | None],
    decisions: Any,
    quiet: _Quiet | None,
) -> tuple[dict[int, Transition], npt.NDArray[np.void], int]:
    """Before 6cb5ccc: every row's time (occurred_at, else its timestamp in range, else now)."""
    uniq = list(dict.fromkeys(item_ids))
    item_of = np.array([uniq.index(i) for i in item_ids], np.intp)
    episodes = np.array([prior[item_ids.index(u)] for u in uniq], EPISODE_DTYPE)
    rows = np.array([i for i in range(len(item_ids)) if i not in decisions.rejected], np.intp)
    ms = np.array([np.nan if s is None else float(s) for s in stamps]) / 1000
    ms[(ms < EARLIEST_TIME) | (ms > LATEST_TIME)] = np.nan
    at = np.where(np.isfinite(occurred), occurred, ms)
    at = np.where(np.isfinite(at), at, NOW.timestamp())
    anomalous = decisions.is_anomaly[rows]
    levels = np.where(anomalous, np.searchsorted(CUTS, decisions.severity_score[rows], side="right"), -1)

    def suppressed(j: int) -> bool:
        i = int(rows[j])
        return quiet is not None and quiet.matches(item_ids[i], list(decisions.reasons(i)), NOW) is not None

    found = advance(episodes, item_of[rows], anomalous, levels.astype(np.int8), at[rows],
                    np.arange(len(item_ids), dtype=np.int64)[rows], policy, suppressed)  # fmt: skip
    moved = {int(rows[t.row]): t for t in found}  # by batch row (a transition's row: of the decided rows)
    kept = {r: t for r, t in moved.items() if t.kind is not Kind.SUPPRESSED}
    return kept, episodes, len(moved) - len(kept)


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    n_items = draw(st.integers(1, 4))
    n = draw(st.integers(0, 30))
    item_of = draw(st.lists(st.integers(0, n_items - 1), min_size=n, max_size=n))
    item_ids = [f"sku-{k}" for k in item_of]
    prior_of = {}
    for k in range(n_items):
        status = draw(st.sampled_from(list(Status)))
        live = status != Status.NONE
        rec = np.zeros(1, EPISODE_DTYPE)
        rec["status"], rec["opened_offset"] = status, draw(st.integers(0, 99)) if live else 0
        rec["first_seen"] = T0 - draw(st.integers(0, 500)) if live else 0.0
        rec["occurrences"] = draw(st.integers(1, 9)) if live else 0
        rec["normal_run"] = draw(st.integers(0, 4)) if live else 0
        rec["max_level"] = draw(st.integers(0, 3)) if live else 0
        prior_of[k] = rec[0]
    prior = np.array([prior_of[k] for k in item_of], EPISODE_DTYPE)
    anomalous = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    severity = draw(st.lists(st.floats(0, 100), min_size=n, max_size=n))
    rejected = set(draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=n // 3))) if n else set()
    for i in rejected:  # a rejected row is no anomaly
        anomalous[i] = False
    occurred = np.array(draw(st.lists(OCCURRED, min_size=n, max_size=n)), np.float64)
    stamps = draw(st.lists(STAMPS, min_size=n, max_size=n))
    policy = EpisodePolicy(draw(st.integers(1, 4)), draw(st.sampled_from([0.0, 30.0])))
    quiet = None
    if draw(st.booleans()):
        quiet = _Quiet(frozenset(draw(st.sets(st.sampled_from(sorted(set(item_ids)) or ["x"])))),
                       frozenset(draw(st.sets(st.integers(0, max(n - 1, 0))))))  # fmt: skip
    return {"item_ids": item_ids, "prior": prior, "anomalous": anomalous, "severity": severity,
            "rejected": rejected, "occurred": occurred, "stamps": stamps, "policy": policy, "quiet": quiet,
            "known": draw(st.booleans()), "given": draw(st.booleans())}  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(batches())
def test_track_episodes_reads_the_times_it_uses_only_and_decides_as_when_it_read_all(
    b: dict[str, Any],
) -> None:
    decisions = _decisions(b["anomalous"], b["severity"], b["rejected"])
    want, want_eps, want_quiet = _reference(
        b["policy"], b["prior"], b["item_ids"], b["occurred"], b["stamps"], decisions, b["quiet"]
    )
    resolving = {r for r, t in want.items() if t.kind is Kind.RESOLVED}
    flagged = {i for i, a in enumerate(b["anomalous"]) if a and i not in b["rejected"]}
    sources = [_Source(i, s, i in flagged | resolving) for i, s in enumerate(b["stamps"])]
    uniq = list(dict.fromkeys(b["item_ids"]))
    items = (uniq, np.array([uniq.index(i) for i in b["item_ids"]], np.intp)) if b["known"] else None
    given_stamps = None
    if b["given"]:  # the caller's stamps (ms, NaN for none): read only for the rows used, too
        given_stamps = np.array([np.nan if s is None else float(s) for s in b["stamps"]], np.float64)
        for s in sources:
            s.allowed = False
    ctx = EpisodeContext(b["policy"], b["quiet"])  # type: ignore[arg-type]
    updates = UpdateBatch.from_columns(
        b["item_ids"], stock=[0.0] * len(sources), min_=[np.nan] * len(sources), max_=[np.nan] * len(sources),
        price=[np.nan] * len(sources), occurred_at=b["occurred"],
    )  # fmt: skip
    got = track_episodes(ctx, b["prior"].copy(), updates, sources, decisions, now=NOW, items=items,
                         stamps=given_stamps)  # fmt: skip
    assert got.transitions == want
    assert all(type(t.at) is float for t in got.transitions.values())
    assert got.ids == uniq and got.episodes.tobytes() == want_eps.tobytes()
    assert got.suppressed == want_quiet
