"""``backoff_delay``: the pause before a retry — exponential from a first pause, optionally capped.

Shared by the retrain worker (a bounded number of attempts) and the webhook bridge (retries
forever, capped at ``notify_max_backoff_s``).
"""

from __future__ import annotations

__all__ = ["backoff_delay"]


def backoff_delay(first_s: float, attempt: int, *, cap_s: float | None = None) -> float:
    """``first_s * 2**(attempt - 1)`` for attempt 1, 2, 3 … (never above ``cap_s`` when given)."""
    if attempt < 1:
        raise ValueError(f"attempts count from 1, got {attempt}")
    delay = first_s * 2.0 ** min(attempt - 1, 62)  # the exponent is bounded: no float overflow
    return min(delay, cap_s) if cap_s is not None else delay
