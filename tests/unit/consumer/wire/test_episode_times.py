"""prime_event_times words a batch's times as event_time does, to the byte (rounding and carries too)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from consumer.wire import episode_events
from consumer.wire.episode_events import event_time, prime_event_times


def _reference(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _edges() -> list[float]:
    """Half-microsecond and half-millisecond ties, fractions that round up to a whole second, negatives."""
    rng = np.random.default_rng(11)
    ties = np.round(rng.uniform(1.6e9, 1.9e9, 2000) * 1e6) / 1e6 + 5e-7
    halves = np.round(rng.uniform(-1e5, 1e5, 2000) * 1e3) / 1e3 + 5e-4
    stored = np.float32(rng.uniform(1.6e9, 1.9e9, 2000)).astype(np.float64)  # episode records keep float32
    wide = rng.uniform(-62135596800.0, 253402300798.0, 2000)
    fixed = [-62135596800.0, 253402300798.0, 0.0, -0.0, -0.5, -1e-7, 0.9999995, -0.9999995, 1.0000005, 1.5e9]
    return [*ties.tolist(), *halves.tolist(), *stored.tolist(), *wide.tolist(), *fixed]


def test_primed_times_are_event_times_text() -> None:
    values = _edges()
    episode_events._TIMES.clear()
    prime_event_times(values)
    primed = dict(episode_events._TIMES)
    assert len(primed) > 7000  # the batch was worded by the numpy pass, not one by one
    assert all(primed[v] == _reference(v) for v in values if v in primed)
    assert all(event_time(v) == _reference(v) for v in values)


def test_times_outside_a_datetime_are_left_to_event_time() -> None:
    episode_events._TIMES.clear()
    prime_event_times([float("nan"), float("inf"), 1e300, 253402300799.9999])
    assert not episode_events._TIMES
    with pytest.raises(ValueError):
        event_time(float("nan"))


def test_event_times_word_each_time_as_event_time_does() -> None:
    values = _edges()[::7]
    episode_events._TIMES.clear()
    assert episode_events.event_times([*values, values[0]]) == [
        *map(_reference, values),
        _reference(values[0]),
    ]


def test_event_times_of_a_time_outside_a_datetime_fail_as_event_time_does() -> None:
    with pytest.raises(ValueError):
        episode_events.event_times([1.5e9, float("nan")])
