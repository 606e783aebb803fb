"""Input and output files of the CLI commands (``-`` = stdin / stdout) and the one-line failure message."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import IO

__all__ = ["fail", "open_in", "open_out"]


def fail(message: str) -> None:
    print(f"stockwatch {message}", file=sys.stderr)


@contextlib.contextmanager
def open_in(name: str) -> Iterator[IO[bytes]]:
    if name == "-":
        yield sys.stdin.buffer
        return
    with open(name, "rb") as fh:
        yield fh


@contextlib.contextmanager
def open_out(name: str) -> Iterator[IO[bytes]]:
    if name == "-":
        yield sys.stdout.buffer
        return
    with open(name, "wb") as fh:
        yield fh
