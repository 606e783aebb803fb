"""A cursor's documents in batches, fetched by a helper thread a few batches ahead of the reader."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any

from consumer.chunks import chunked

__all__ = ["cursor_batches", "prefetched"]

_Batches = Generator[list[dict[str, Any]], None, None]


def cursor_batches(cursor: Any, size: int) -> _Batches:
    """The cursor's documents in lists of ``size``; the cursor is closed when this stops."""
    with cursor:
        yield from chunked(cursor, size)


def prefetched(batches: _Batches, *, depth: int) -> Iterator[list[dict[str, Any]]]:
    """``batches``, produced by a helper thread at most ``depth`` items ahead of the consumer."""
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fill() -> None:
        with contextlib.closing(batches):  # closes the cursor in the thread that uses it
            try:
                for batch in batches:
                    if not put(("batch", batch)):
                        return
            except BaseException as exc:  # handed to the consumer, which re-raises it
                put(("error", exc))
                return
        put(("done", None))

    thread = threading.Thread(target=fill, name="mongo-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "batch":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        thread.join()
