"""File primitives of the model store: capped reads of regular files only, synced writes."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from detection.store_types import ModelVerificationError

__all__ = ["UnsafeFileError", "exclusive_lock", "fsync_dir", "read_capped", "sha256", "write_synced"]


class UnsafeFileError(ModelVerificationError):
    """Not a regular file, or larger than the cap for its kind: the store refuses it."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def read_capped(path: Path, cap: int) -> bytes:
    """A regular file's bytes, at most its cap; FIFOs, devices and oversize files are refused.

    Opened non-blocking (a FIFO would otherwise block the open itself) and without following a
    final symlink; the type and size checks use the opened descriptor, so a swap cannot slip in.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise UnsafeFileError(f"{path} cannot be opened as a regular file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{path} is not a regular file")
        if info.st_size > cap:
            raise UnsafeFileError(f"{path} is {info.st_size} bytes, over its {cap}-byte cap")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(cap + 1)
    finally:
        os.close(fd)
    if len(data) > cap:
        raise UnsafeFileError(f"{path} grew over its {cap}-byte cap while being read")
    return data


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on the regular file ``path`` (created if missing).

    Non-blocking open without following a symlink: a FIFO, directory or link planted as the lock
    file is refused at once instead of hanging the open or the caller.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise UnsafeFileError(f"{path} is not a regular file; remove it") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFileError(f"{path} is not a regular file; remove it")
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
