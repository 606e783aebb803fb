"""Input and output files of the CLI commands (``-`` = stdin / stdout) and the one-line failure message."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, cast

__all__ = ["FileOptionError", "drop_stdout", "fail", "open_file", "open_in", "open_out", "same_file_problem"]

# What a user is told when a file cannot be opened; any other error: its own text, lowercased
_OPEN_PROBLEMS = {errno.ENOENT: "no such file", errno.EISDIR: "is a directory"}


class FileOptionError(OSError):
    """A file a flag names cannot be opened; the text is the whole one-line message:
    ``--baseline: no such file: x`` (an OSError, so every command's file-error handling prints it)."""


def drop_stdout() -> None:
    """Point stdout at /dev/null: its pending output would fail again, with a traceback, when the
    interpreter flushes it at exit (a full disk, a reader that left)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def fail(message: str) -> None:
    print(f"stockwatch {message}", file=sys.stderr)


def open_file(name: str | Path, flag: str, mode: str = "rb") -> IO[bytes]:
    """``open(name, mode)`` whose failure names ``flag`` and the path (:class:`FileOptionError`)."""
    try:
        return cast(IO[bytes], open(name, mode))  # the caller closes it
    except OSError as exc:
        what = _OPEN_PROBLEMS.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).lower()
        if exc.errno == errno.ENOENT and "w" in mode:
            what = "no such directory to create it in"
        raise FileOptionError(f"{flag}: {what}: {name}") from None


@contextlib.contextmanager
def open_in(name: str, flag: str) -> Iterator[IO[bytes]]:
    """The file ``flag`` names, for reading (``-``: stdin)."""
    if name == "-":
        yield sys.stdin.buffer
        return
    with open_file(name, flag) as fh:
        yield fh


@contextlib.contextmanager
def open_out(name: str, flag: str) -> Iterator[IO[bytes]]:
    """The file ``flag`` names, truncated for writing (``-``: stdout)."""
    if name == "-":
        yield sys.stdout.buffer
        return
    with open_file(name, flag, "wb") as fh:
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
