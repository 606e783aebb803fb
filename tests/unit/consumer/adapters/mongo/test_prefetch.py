"""The prefetch behind ``WorkerMongo.iter_inventory`` (no server needed)."""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any

import pytest

from consumer.adapters.mongo.prefetch import prefetched

Batch = list[dict[str, Any]]


def _source(
    n: int, *, fail_at: int | None = None, closed: list[bool] | None = None
) -> Generator[Batch, None, None]:
    try:
        for i in range(n):
            if i == fail_at:
                raise RuntimeError(f"boom at {i}")
            yield [{"i": i}]
    finally:
        if closed is not None:
            closed.append(True)


def test_read_ahead_keeps_order_and_ends() -> None:
    closed: list[bool] = []
    got = [b[0]["i"] for b in prefetched(_source(50, closed=closed), depth=2)]
    assert got == list(range(50))
    assert closed == [True]


def test_read_ahead_reraises_the_source_error_after_the_batches_before_it() -> None:
    got: list[int] = []
    with pytest.raises(RuntimeError, match="boom at 3"):
        for b in prefetched(_source(10, fail_at=3), depth=2):
            got.append(b[0]["i"])
    assert got == [0, 1, 2]


def test_read_ahead_stops_the_thread_and_closes_the_source_when_the_caller_stops() -> None:
    closed: list[bool] = []
    before = threading.active_count()
    it = prefetched(_source(1000, closed=closed), depth=2)
    assert next(it)[0]["i"] == 0
    it.close()
    assert closed == [True]
    assert threading.active_count() == before
