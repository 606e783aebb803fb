"""A scoring service running in a thread (the API route), for integration tests."""

from __future__ import annotations

import sys
import threading
import traceback
from typing import Any

from consumer.scoring.loop import RunStats, ScoringService


class Running:
    """``service.run(**bounds)`` in a daemon thread; how it ended goes to stderr, which pytest
    shows for a failed test (a service that stopped early is then visible, not only a timeout)."""

    def __init__(self, service: ScoringService, **bounds: Any) -> None:
        self.service = service
        self.stats: RunStats | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, kwargs=bounds, daemon=True)
        self.thread.start()

    def _run(self, **bounds: Any) -> None:
        try:
            self.stats = self.service.run(**bounds)
        except BaseException as exc:
            self.error = exc
            print("the service thread raised:", file=sys.stderr)
            traceback.print_exc()
        else:
            print(f"the service stopped ({self.stats.stopped_by}): {self.stats!r}", file=sys.stderr)

    def stop(self, timeout: float = 20.0) -> RunStats:
        self.service.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "service did not stop"
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats
