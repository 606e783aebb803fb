"""Input and output files of the CLI commands (``-`` = stdin / stdout) and the one-line failure message."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

__all__ = ["fail", "open_in", "open_out", "same_file_problem"]


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


def same_file_problem(
    inputs: Mapping[str, str | Path | None], outputs: Mapping[str, str | Path | None]
) -> str | None:
    """Why writing ``outputs`` (flag -> name) would destroy an input or another output, or None.

    Checked before anything is opened: opening an output truncates it. ``-`` as an input is stdin
    (compared when it is redirected from a file); ``-`` as an output is stdout, never compared.
    """
    earlier = [(flag, name) for flag, name in inputs.items() if name is not None]
    for flag, name in outputs.items():
        if name is None or str(name) == "-":
            continue
        for other, other_name in earlier:
            if _same_file(str(name), str(other_name)):
                return f"{flag} {name} is the same file as {other}; refusing to overwrite it"
        earlier.append((flag, name))
    return None


def _same_file(output: str, other: str) -> bool:
    if other == "-":
        try:
            info = os.fstat(sys.stdin.fileno())
            return stat.S_ISREG(info.st_mode) and os.path.samestat(info, os.stat(output))
        except (OSError, ValueError, AttributeError):  # no stdin, or no such output yet
            return False
    try:
        return os.path.samefile(output, other)
    except OSError:  # one does not exist (yet): the same path is still the same file
        return os.path.abspath(output) == os.path.abspath(other)
