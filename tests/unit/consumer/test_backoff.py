"""backoff_delay: doubling from the first pause, capped when asked."""

from __future__ import annotations

import pytest

from consumer.backoff import backoff_delay


def test_doubles_and_caps() -> None:
    assert [backoff_delay(0.5, n) for n in range(1, 5)] == [0.5, 1.0, 2.0, 4.0]
    assert [backoff_delay(1, n, cap_s=30) for n in (5, 6, 7, 10_000)] == [16, 30, 30, 30]


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff_delay(1, 0)
