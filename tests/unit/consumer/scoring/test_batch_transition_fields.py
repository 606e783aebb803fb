"""batch_transition_fields (a batch's episode fields at once) writes, key for key and in the same
order, what add_transition_fields writes for each transition on its own."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.scoring.episode_batch import add_transition_fields, batch_transition_fields
from consumer.scoring.episodes import Kind, Transition

PUBLISHED = [Kind.OPEN, Kind.ESCALATED, Kind.RENOTIFIED, Kind.RESOLVED]
# epoch seconds: ties at half a millisecond, repeats (an episode's events share first_seen), far dates
TIME = st.one_of(
    st.floats(1.6e9, 1.9e9, allow_nan=False),
    st.integers(1_600_000_000_000, 1_900_000_000_000).map(lambda ms: ms / 1000 + 5e-4),
    st.sampled_from([0.0, -0.5, 1.7e9, 253402300798.0]),
)
TRANSITION = st.builds(
    Transition,
    row=st.integers(0, 2000),
    kind=st.sampled_from(PUBLISHED),
    opened_offset=st.integers(0, 2**40),
    first_seen=TIME,
    last_seen=TIME,
    occurrences=st.integers(1, 10_000),
    max_level=st.sampled_from(["low", "medium", "high", "critical"]),
    at=TIME,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(TRANSITION, st.text("0123456789abcdef", min_size=32, max_size=32)), max_size=40))
def test_batch_fields_are_each_transitions_fields(batch: list[tuple[Transition, str]]) -> None:
    expected: list[list[tuple[str, Any]]] = []
    for t, episode in batch:
        fields: dict[str, Any] = {}
        add_transition_fields(fields, t, episode)
        expected.append(list(fields.items()))
    found = batch_transition_fields([t for t, _ in batch], [e for _, e in batch])
    assert [list(f.items()) for f in found] == expected


def test_an_unworded_time_of_an_unresolved_transition_is_not_asked_for() -> None:
    t = Transition(0, Kind.OPEN, 1, 1.7e9, 1.7e9, 1, "high", math.nan)  # ``at`` is only read on resolution
    assert batch_transition_fields([t], ["e" * 32])[0]["status"] == "open"
