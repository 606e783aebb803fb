"""The pure episode logic: one open per episode, resolved by enough normals, batch- and replay-stable."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.scoring.episodes import EPISODE_DTYPE, EpisodePolicy, Kind, Status, Transition, advance

Update = tuple[int, int]  # (item, level): level -1 = normal, 0..3 = anomalous at that level


def run(
    updates: Sequence[Update],
    episodes: np.ndarray,
    policy: EpisodePolicy,
    *,
    start: int = 0,
    suppressed: Callable[[int], bool] = lambda _r: False,
    step_s: float = 10.0,
) -> list[tuple[int, Transition]]:
    """Updates at offsets start.. (event time 1000 + 10 s per offset); (item, transition) pairs."""
    n = len(updates)
    items = np.array([u[0] for u in updates], np.intp)
    levels = np.array([u[1] for u in updates], np.int8)
    offsets = np.arange(start, start + n, dtype=np.int64)
    at = 1000.0 + step_s * offsets.astype(np.float64)
    found = advance(episodes, items, levels >= 0, levels, at, offsets, policy,
                    lambda r: suppressed(int(offsets[r])))  # fmt: skip
    return [(int(items[t.row]), t) for t in found]


def kinds(found: list[tuple[int, Transition]]) -> list[str]:
    return [str(t.kind) for _, t in found]


POLICY = EpisodePolicy(resolve_after=3)


def test_normal_then_three_anomalies_then_normals_open_once_and_resolve_once() -> None:
    eps = np.zeros(1, EPISODE_DTYPE)
    found = run([(0, -1), (0, 2), (0, 2), (0, 2), (0, -1), (0, -1), (0, -1)], eps, POLICY)
    assert kinds(found) == ["open", "resolved"]
    (_, opened), (_, resolved) = found
    assert opened.opened_offset == resolved.opened_offset == 1
    assert (resolved.occurrences, resolved.max_level, resolved.first_seen) == (3, "high", 1010.0)
    assert resolved.last_seen == 1030.0 and resolved.duration_s == 50.0
    assert eps["status"][0] == Status.NONE


def test_escalation_only_when_the_level_rises_above_every_earlier_one() -> None:
    eps = np.zeros(1, EPISODE_DTYPE)
    found = run([(0, 1), (0, 0), (0, 2), (0, 1), (0, 2), (0, 3)], eps, POLICY)
    assert kinds(found) == ["open", "escalated", "escalated"]
    assert [t.max_level for _, t in found] == ["medium", "high", "critical"]


def test_hysteresis_an_item_hovering_at_the_threshold_stays_in_one_episode() -> None:
    eps = np.zeros(1, EPISODE_DTYPE)
    found = run([(0, 1), (0, -1), (0, 1), (0, -1), (0, -1), (0, 1), (0, -1), (0, -1), (0, -1)], eps, POLICY)
    assert kinds(found) == ["open", "resolved"]
    assert found[1][1].occurrences == 3


def test_renotification_after_the_interval_of_event_time() -> None:
    eps = np.zeros(1, EPISODE_DTYPE)
    policy = EpisodePolicy(resolve_after=3, renotify_after_s=25.0)
    found = run([(0, 1)] * 7, eps, policy)  # 10 s apart: renotified at +30 s and +60 s
    assert kinds(found) == ["open", "renotified", "renotified"]
    assert [t.at for _, t in found] == [1000.0, 1030.0, 1060.0]


def test_a_suppressed_open_publishes_nothing_for_the_whole_episode_and_blocks_new_ones() -> None:
    eps = np.zeros(1, EPISODE_DTYPE)
    found = run([(0, 1), (0, 3), (0, 1), (0, -1), (0, -1)], eps, POLICY, suppressed=lambda _o: True)
    assert kinds(found) == ["suppressed"]
    assert eps["status"][0] == Status.SILENT and eps["occurrences"][0] == 3
    found = run([(0, -1), (0, 2)], eps, POLICY, start=5, suppressed=lambda _o: False)
    assert kinds(found) == ["open"]  # the silent one resolved silently; the window is over


def test_a_suppression_starting_mid_episode_withholds_escalations_but_not_the_resolution() -> None:
    eps = np.zeros(1, EPISODE_DTYPE)
    found = run([(0, 0), (0, 3), (0, -1), (0, -1), (0, -1)], eps, POLICY, suppressed=lambda o: o >= 1)
    assert kinds(found) == ["open", "resolved"]


def test_rows_of_other_items_are_independent() -> None:
    eps = np.zeros(2, EPISODE_DTYPE)
    found = run([(0, 1), (1, -1), (1, 2), (0, -1), (1, -1), (0, -1), (0, -1)], eps, POLICY)
    assert [(i, str(t.kind)) for i, t in found] == [(0, "open"), (1, "open"), (0, "resolved")]
    assert eps["status"].tolist() == [Status.NONE, Status.OPEN]


updates_st = st.lists(st.tuples(st.integers(0, 2), st.integers(-1, 3)), max_size=80)
policy_st = st.builds(
    EpisodePolicy, resolve_after=st.integers(1, 4), renotify_after_s=st.sampled_from([0.0, 35.0])
)


@settings(max_examples=300, deadline=None)
@given(updates_st, policy_st, st.sets(st.integers(0, 79), max_size=10))
def test_opens_and_resolutions_alternate_per_item_and_every_open_resolves(
    updates: list[Update], policy: EpisodePolicy, quiet: set[int]
) -> None:
    eps = np.zeros(3, EPISODE_DTYPE)
    found = run(updates, eps, policy, suppressed=quiet.__contains__)
    for item in range(3):
        mine = [t for i, t in found if i == item]
        opened: int | None = None
        for t in mine:
            if t.kind is Kind.SUPPRESSED:  # a silent episode: it closes without a transition
                assert opened is None, "an open while an episode is open"
            elif t.kind is Kind.OPEN:
                assert opened is None, "a second open while an episode is open"
                opened = t.opened_offset
            else:
                assert opened is not None and t.opened_offset == opened  # one episode id throughout
                if t.kind is Kind.RESOLVED:
                    opened = None
        silent = [t for t in mine if t.kind is Kind.SUPPRESSED]
        assert not any(t.kind is not Kind.SUPPRESSED and t.opened_offset in {s.opened_offset for s in silent}
                       for t in mine)  # fmt: skip
    tail = [(k, -1) for k in range(3) for _ in range(policy.resolve_after)]
    run(tail, eps, policy, start=len(updates))
    assert (eps["status"] == Status.NONE).all(), "enough normal updates resolve every episode"


@settings(max_examples=200, deadline=None)
@given(updates_st, policy_st, st.lists(st.integers(0, 80), max_size=4))
def test_any_split_into_batches_decides_like_one_batch(
    updates: list[Update], policy: EpisodePolicy, cuts: list[int]
) -> None:
    whole = np.zeros(3, EPISODE_DTYPE)
    expected = run(updates, whole, policy)
    parts = np.zeros(3, EPISODE_DTYPE)
    got: list[tuple[int, Transition]] = []
    bounds = sorted({0, len(updates), *(c for c in cuts if c < len(updates))})
    for a, b in itertools.pairwise(bounds):
        got += [(i, t) for i, t in run(updates[a:b], parts, policy, start=a)]
    strip = [(i, t.kind, t.opened_offset, t.occurrences, t.max_level, t.at) for i, t in expected]
    assert strip == [(i, t.kind, t.opened_offset, t.occurrences, t.max_level, t.at) for i, t in got]
    assert whole.tobytes() == parts.tobytes()


@settings(max_examples=200, deadline=None)
@given(updates_st, policy_st, st.integers(0, 80))
def test_a_replay_from_the_saved_record_repeats_the_same_transitions(
    updates: list[Update], policy: EpisodePolicy, cut: int
) -> None:
    """kill -9 after a batch: the records restored are those before it, so its replay decides the same."""
    cut = min(cut, len(updates))
    eps = np.zeros(3, EPISODE_DTYPE)
    run(updates[:cut], eps, policy)
    saved = eps.copy()
    first = run(updates[cut:], eps, policy, start=cut)
    replay = run(updates[cut:], saved, policy, start=cut)
    assert [(i, t) for i, t in first] == [(i, t) for i, t in replay]
    assert eps.tobytes() == saved.tobytes()
