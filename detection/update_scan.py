"""Updates straight from a batch's JSON record values, when every one is a plain update.

``decode + parse_updates`` builds a dict per record (orjson) and then pulls each field out of
every dict; for a batch of plain records this scans the bytes once (:mod:`detection.scan_kernel`)
into the same :class:`UpdateBatch`. It answers only for batches it is sure of: any record that is
not a flat ASCII JSON object of plain values, or any row that ``parse_updates`` would reject or
parse by row, makes it return None, and the caller takes the dict path. The result then equals
``parse_updates(orjson.loads(v) for v in values)`` with no rejects, which
``tests/unit/detection/test_update_scan.py`` checks on generated batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from detection.items import EARLIEST_TIME, LATEST_TIME, MAX_MAGNITUDE
from detection.update_columns import plain_ids
from detection.updates import UpdateBatch

__all__ = ["scan_updates"]


def scan_updates(values: Sequence[bytes], group_field: str) -> UpdateBatch | None:
    """The updates of JSON record ``values`` (see the module docstring), or None."""
    from detection.scan_kernel import FIELD_KEYS, scan_records  # numba loads on first use

    plain = values and group_field not in FIELD_KEYS and _plain_key(group_field)
    joined = _joined(values) if plain else None
    if joined is None:
        return None
    buf, starts = joined
    found = scan_records(buf, starts, group_field.encode())
    if found is None:
        return None
    numbers, spans = found
    ids = _split(buf, spans[:, 0])  # the scan found every record's
    if not plain_ids(ids):
        return None
    levels = numbers[:, :4]
    if (np.abs(levels) > MAX_MAGNITUDE).any():  # NaN (absent) compares False
        return None
    times = numbers[:, 4]
    if ((times < EARLIEST_TIME) | (times > LATEST_TIME)).any():
        return None
    stock, min_, max_, price = (np.ascontiguousarray(numbers[:, k]) for k in range(4))
    return UpdateBatch(ids, stock, min_, max_, price, np.ascontiguousarray(times),
                       _texts(buf, spans[:, 2]), _texts(buf, spans[:, 1]))  # fmt: skip


def _joined(values: Sequence[bytes]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]] | None:
    """The values in one buffer and where each starts (and the last ends); None when a value is not
    bytes-like (a ``str``: orjson reads it) or its ``len`` is not its size in bytes (a memoryview of
    wider items: the records' bounds would not be the values')."""
    try:
        buf = np.frombuffer(b"".join(values), np.uint8)
    except TypeError:
        return None
    starts = np.zeros(len(values) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, values), np.int64, count=len(values)), out=starts[1:])
    return (buf, starts) if starts[-1] == buf.size else None


def _texts(buf: npt.NDArray[np.uint8], spans: npt.NDArray[np.int64]) -> list[str | None]:
    """The text of each span (start, end) of ``buf``; None where absent or null (start -1)."""
    absent = spans[:, 0] < 0
    if absent.all():  # a field the batch does not carry (often the group)
        return [None] * len(spans)
    said: list[str | None] = list(_split(buf, spans))
    if absent.any():
        for r in np.flatnonzero(absent).tolist():
            said[r] = None
    return said


def _split(buf: npt.NDArray[np.uint8], spans: npt.NDArray[np.int64]) -> list[str]:
    """The text of each span (start, end) of ``buf`` ("" where absent): ASCII, as the scan vouched."""
    from detection.scan_kernel import joined_spans

    return joined_spans(buf, spans).decode("ascii").split("\x00")


def _plain_key(key: str) -> bool:
    """A group field a plain record can name without an escape (or none)."""
    return key.isascii() and all(ord(c) >= 32 and c not in '"\\' for c in key)
