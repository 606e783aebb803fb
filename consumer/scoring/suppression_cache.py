"""The active suppressions, as `stockwatch consume` sees them: refreshed in the background.

A thread reloads Mongo ``suppressions`` every ``refresh_s``; the scoring loop only reads the last
loaded set (a dict swapped whole, never a query on the loop's path). When Mongo cannot be read the
last known set stays in force, ``stockwatch_suppressions_stale`` is 1 and one warning says so
(another when it is read again). A document that is not a suppression is skipped with a warning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from consumer.wire.suppressions import Suppression, matching

__all__ = ["SuppressionCache"]

log = logging.getLogger(__name__)


class SuppressionCache:
    """``load()`` returns the stored suppression documents (raises when the store is unreachable)."""

    def __init__(
        self,
        load: Callable[[], Iterable[Mapping[str, Any]]],
        *,
        refresh_s: float = 10.0,
        on_refresh: Callable[[int, bool], None] = lambda _active, _stale: None,
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self._load, self.refresh_s, self.on_refresh = load, refresh_s, on_refresh
        self._close = close  # what load() opened (its Mongo client): closed once refreshing stops
        self._lock = threading.Lock()
        self._by_item: dict[str, list[Suppression]] = {}
        self.stale = False
        self.loaded = threading.Event()  # set after the first successful load
        self.attempted = threading.Event()  # set after the first load, successful or not
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start the refresh thread (it loads at once); False when it was running already."""
        with self._lock:
            if self._thread is not None:
                return False
            stop = self._stop = threading.Event()  # the thread's own: a later start() must not revive it
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="stockwatch-suppressions", daemon=True
            )
            self._thread.start()
            return True

    def stop(self) -> None:
        """Stop refreshing (the last loaded set stays); start() starts again."""
        self._stop.set()
        self._thread = None

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.refresh()
            finally:
                self.attempted.set()
            stop.wait(self.refresh_s)
        with self._lock:
            if self._stop is stop:  # not started again meanwhile: the next thread would use the client
                self._close()

    def wait_first(self, timeout_s: float, tick: Callable[[], None] = lambda: None) -> bool:
        """Wait (ticking) until the first load was tried, at most ``timeout_s``; True when it was."""
        deadline = time.monotonic() + timeout_s
        while not self.attempted.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                return False
            tick()
        return True

    def refresh(self, now: datetime | None = None) -> bool:
        """One load of the suppressions active at ``now`` (default: the clock); False (and the last set
        kept) when the store could not be read."""
        try:
            docs = list(self._load())
        except Exception as exc:  # Mongo down or refusing: keep serving the last known set
            if not self.stale:
                log.warning(
                    "cannot read the suppressions (%s); the last known %d stay in force", exc, self.active
                )
            self.stale = True
            self.on_refresh(self.active, True)
            return False
        now = now or datetime.now(UTC)
        by_item: dict[str, list[Suppression]] = {}
        for doc in docs:
            try:
                s = Suppression.from_doc(doc)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("skipping suppression %r that is not one: %r", doc.get("_id"), exc)
                continue
            if s.is_active(now):  # expired ones are history, not rules
                by_item.setdefault(s.item_id, []).append(s)
        if self.stale:
            log.info("suppressions readable again: %d loaded", sum(map(len, by_item.values())))
        self._by_item, self.stale = by_item, False  # one reference swap: readers see old or new
        self.loaded.set()
        self.on_refresh(self.active, False)
        return True

    @property
    def active(self) -> int:
        return sum(map(len, self._by_item.values()))

    def for_item(self, item_id: str) -> Sequence[Suppression]:
        return self._by_item.get(item_id, ())

    def matches(self, item_id: str, reasons: Iterable[str], now: datetime) -> Suppression | None:
        """The active suppression covering ``item_id`` and one of ``reasons`` (None: none)."""
        candidates = self._by_item.get(item_id)
        if not candidates:
            return None
        return matching(candidates, item_id=item_id, reasons=reasons, now=now)
