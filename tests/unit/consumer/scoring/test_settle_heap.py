"""settle_heap: start-up objects frozen, young collections spaced for batch-sized allocation."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from consumer.scoring.wiring import GC_THRESHOLDS, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_settle_heap_freezes_and_spaces_collections() -> None:
    gc.set_threshold(700, 10, 10)
    alive = [[i] for i in range(1000)]  # tracked containers alive at start-up
    settle_heap()
    assert gc.get_freeze_count() >= len(alive)
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # fewer young collections than CPython's default
