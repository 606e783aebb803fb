"""Per-line rejections of a snapshot file (``train --items``, ``score --baseline``, ``seed --items``).

The first few rejected lines are reported one per line on stderr, then one line counts the rest: a
file of the wrong kind gives a screenful, not one line per line of it. A file with not a single
valid line is refused (exit 2) by each command alike, with :func:`no_valid_line`.
"""

from __future__ import annotations

import sys
from typing import Final

__all__ = ["SHOWN_REJECTIONS", "RejectedLines", "no_valid_line"]

SHOWN_REJECTIONS: Final = 5


class RejectedLines:
    """Reports the rejected lines of one file: ``prefix: name: line N: rejected: why``, capped."""

    def __init__(
        self, name: str, *, prefix: str = "stockwatch", shown: int | None = SHOWN_REJECTIONS
    ) -> None:
        self.name, self.prefix, self.shown = name, prefix, shown
        self.count = 0

    def add(self, lineno: int, reason: str) -> None:
        self.count += 1
        if self.shown is None or self.count <= self.shown:
            print(f"{self.prefix}: {self.name}: line {lineno}: rejected: {reason}", file=sys.stderr)

    def finish(self) -> None:
        """Count the rejected lines not shown (call once the whole file was read)."""
        if self.shown is not None and self.count > self.shown:
            print(f"{self.prefix}: {self.name}: {self.count - self.shown} more rejected line(s) not shown "
                  f"({self.count} in all)", file=sys.stderr)  # fmt: skip


def no_valid_line(flag: str, name: str, rejected: int) -> str:
    """The one-line refusal of a file that holds no usable line."""
    return f"{flag} {name} holds no valid item ({rejected} rejected)"
