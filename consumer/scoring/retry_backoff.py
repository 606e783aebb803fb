"""How long the scoring loop pauses before it retries a failed delivery (pure: no clock, no I/O).

The pause is the loop's ``retry_backoff_s``, doubled per failure in a row up to MAX_RETRY_BACKOFF_S;
a retry at once (an output refused as such: the next attempt reduces or parks it) neither waits nor
lengthens the next pause. Any failure in a row also tells the stop that the last transaction did
not commit.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_RETRY_BACKOFF_S", "RetryBackoff"]

MAX_RETRY_BACKOFF_S = 30.0  # the pause before a retry doubles per failure in a row, up to this


@dataclass(slots=True)
class RetryBackoff:
    """The failures since the last acknowledged batch, and the pause they call for."""

    failures_in_row: int = 0
    waited_failures: int = 0  # of those, the ones retried after a pause: they alone grow it

    def succeeded(self) -> None:
        """A batch was acknowledged: the next failure starts from the first pause again."""
        self.failures_in_row = self.waited_failures = 0

    def refused(self) -> None:
        """A transaction's offsets were refused: it did not commit, and nothing is retried here."""
        self.failures_in_row += 1

    def failed(self, base_s: float, *, at_once: bool) -> float:
        """A delivery failed and is retried: the pause before the retry, in seconds (``base_s`` first)."""
        self.failures_in_row += 1
        self.waited_failures += not at_once  # a burst of refused outputs must not slow the next retry
        pause = 0.0 if at_once else base_s * 2 ** min(self.waited_failures - 1, 16)
        return min(pause, MAX_RETRY_BACKOFF_S)
