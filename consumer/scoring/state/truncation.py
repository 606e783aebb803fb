"""The changelog's DeleteRecords and end-offset reads, off the loop thread.

Both are broker round trips (~0.3 s measured for an end offset on a loaded host), and with a
small table a rewrite cycle can end at every flush: run on the loop thread they cost the
`default` detector a third of its throughput (bench § 2). One daemon thread does them in order;
the loop takes the results at its next changelog write (:func:`.writes.truncate_cycles`). A
cycle waits for its start offset (:meth:`.rolling.RollingRewrite.wait`), so no slice is cut
before the end offset it truncates at later has been read. The thread is the only user of the
changelog adapter's admin clients (the restore reader stays the loop's).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from consumer.ports import StateChangelog
from consumer.scoring.state.rolling import Cycle

__all__ = ["Started", "Truncator"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Started:
    """A job's outcome: the partition's next cycle and its start (None: unknown), or a refusal."""

    partition: int
    cycle: Cycle
    start: int | None
    refused: bool = False  # the topic refuses DeleteRecords (its cleanup.policy lacks delete)


class Truncator:
    """Truncates below a durable cycle's start, then reads where the partition's next cycle starts."""

    def __init__(self, changelog: StateChangelog, *, background: bool = True) -> None:
        self.changelog = changelog
        self.background = background  # False: at once, on the caller's thread (tests)
        self._jobs: queue.SimpleQueue[tuple[int, Cycle, int | None] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[Started] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def request(self, partition: int, cycle: Cycle, before: int | None) -> None:
        """Delete ``partition``'s records below ``before`` (None: nothing), then read the start of ``cycle``."""
        if not self.background:
            self._done.put(self._run(partition, cycle, before))
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name="stockwatch-changelog-truncation", daemon=True
            )
            self._thread.start()
        self._jobs.put((partition, cycle, before))

    def results(self) -> list[Started]:
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=15.0)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._done.put(self._run(*job))

    def _run(self, partition: int, cycle: Cycle, before: int | None) -> Started:
        topic = self.changelog.topic
        if before is not None:
            try:
                if not self.changelog.truncate(partition, before):
                    return Started(partition, cycle, None, refused=True)
                log.info(
                    "truncated %s[%d] below offset %d (a rewrite cycle is durable)", topic, partition, before
                )
            except Exception as exc:  # an outage: the next cycle truncates further
                log.warning("could not truncate %s[%d] (%r); the next cycle will", topic, partition, exc)
        try:
            return Started(partition, cycle, self.changelog.end_offset(partition))
        except Exception as exc:  # this cycle then truncates nothing; the next one reads it again
            log.warning("could not read the end of %s[%d] (%r)", topic, partition, exc)
            return Started(partition, cycle, None)
