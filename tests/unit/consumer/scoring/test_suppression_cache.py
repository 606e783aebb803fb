"""The suppressions' refresh thread closes what its loads opened once it stops, not before."""

from __future__ import annotations

import threading

from consumer.scoring.suppression_cache import SuppressionCache


def test_stopping_closes_the_loader_once_and_a_restart_keeps_it_open() -> None:
    closed = threading.Event()
    closes: list[int] = []

    def close() -> None:
        closes.append(1)
        closed.set()

    cache = SuppressionCache(lambda: [], refresh_s=60.0, close=close)
    assert cache.start()
    assert cache.attempted.wait(5)
    assert not closes  # refreshing: the client stays open
    cache.stop()
    assert closed.wait(5)
    assert closes == [1]


def test_a_start_right_after_a_stop_does_not_close_the_client_the_new_thread_uses() -> None:
    closes: list[int] = []
    gate = threading.Event()

    def load() -> list[dict[str, object]]:
        gate.wait(5)  # the first thread is still loading when it is stopped and started again
        return []

    cache = SuppressionCache(load, refresh_s=60.0, close=lambda: closes.append(1))
    cache.start()
    cache.stop()
    cache.start()
    first = cache._thread
    gate.set()
    assert cache.attempted.wait(5)
    threads = [t for t in threading.enumerate() if t.name == "stockwatch-suppressions" and t is not first]
    for t in threads:
        t.join(5)
    assert closes == []
    cache.stop()
