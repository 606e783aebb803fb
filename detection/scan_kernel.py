"""A batch's JSON update records scanned into columns by one compiled loop (no dict per record).

The plain case only: a flat JSON object per record, ASCII, no escapes, numbers without exponent
and with at most 15 digits. Any other record makes :func:`scan_records` give up on the batch (the
caller decodes it with orjson and parses it as before), so the JSON grammar and the update rules
keep one definition each (``orjson`` and :mod:`detection.updates`); this scanner only has to be
right about the records it accepts (``tests/unit/detection/test_update_scan.py``).

Numbers: ``m / 10**k`` with ``m < 2**53`` and ``k <= 15``: both exact doubles, so the one IEEE
division is the correctly rounded value of the decimal, as orjson's parser gives.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from numba import njit

__all__ = ["FIELD_KEYS", "N_NUMBERS", "joined_spans", "scan_records", "warm_up_scan"]

# field codes: numbers first (the column order of UpdateBatch), then the texts, then refused keys
FIELD_KEYS = ("stock_quantity", "min_stock_level", "max_stock_level", "price", "occurred_at",
              "item_id", "event_id", "<group>", "min_stock", "max_stock")  # fmt: skip
N_NUMBERS = 5
_ITEM, _GROUP, _REFUSED = 5, 7, 8  # the texts: item id, event id, group
_MAX_DIGITS = 15
_POW10 = np.array([10.0**k for k in range(_MAX_DIGITS + 1)])  # exact doubles


@njit(cache=True, nogil=True)
def _ws(buf, i, e):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    while i < e and (buf[i] == 32 or buf[i] == 10 or buf[i] == 13 or buf[i] == 9):
        i += 1
    return i


@njit(cache=True, nogil=True)
def _string_end(buf, i, e):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    """Index of the closing quote of a string whose content starts at ``i``; -1 if not plain."""
    while i < e:
        c = buf[i]
        if c == 34:
            return i
        if c == 92 or c < 32 or c >= 128:  # an escape, a control byte, non-ASCII: orjson decides
            return -1
        i += 1
    return -1


@njit(cache=True, nogil=True)
def _field(buf, s, e, keys, key_starts):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    for f in range(key_starts.size - 1):
        a, b = key_starts[f], key_starts[f + 1]
        if b - a == e - s:
            same = True
            for j in range(b - a):
                if keys[a + j] != buf[s + j]:
                    same = False
                    break
            if same:
                return f
    return -1


@njit(cache=True, nogil=True)
def _number(buf, i, e, pow10):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    """(index after the number, its value, ok) of a JSON number starting at ``i``."""
    neg = buf[i] == 45
    if neg:
        i += 1
    if i >= e or not 48 <= buf[i] <= 57:
        return i, 0.0, False
    m, digits = 0, 0
    if buf[i] == 48:
        i += 1
        if i < e and 48 <= buf[i] <= 57:  # a leading zero: not JSON
            return i, 0.0, False
    while i < e and 48 <= buf[i] <= 57:
        m = m * 10 + (buf[i] - 48)
        digits += 1
        i += 1
    k, fraction = 0, False
    if i < e and buf[i] == 46:
        fraction = True
        i += 1
        if i >= e or not 48 <= buf[i] <= 57:
            return i, 0.0, False
        while i < e and 48 <= buf[i] <= 57:
            m = m * 10 + (buf[i] - 48)
            digits += 1
            k += 1
            i += 1
    if digits > _MAX_DIGITS or (i < e and (buf[i] == 101 or buf[i] == 69)):  # long or with exponent: orjson's
        return i, 0.0, False
    if not fraction:
        return i, float(-m if neg else m), True  # an int: -0 is 0
    value = m / pow10[k]
    return i, -value if neg else value, True


@njit(cache=True, nogil=True)
def _literal(buf, i, e, word):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    if i + word.size > e:
        return False
    for j in range(word.size):  # noqa: SIM110 (numba compiles no all() of a generator)
        if buf[i + j] != word[j]:
            return False
    return True


@njit(cache=True, nogil=True)
def _scan(buf, starts, keys, key_starts, pow10, null, true, false, numbers, texts):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202, PLR0911, PLR0912, PLR0915, PLR0917
    for r in range(starts.size - 1):
        i, e = starts[r], starts[r + 1]
        seen = 0
        i = _ws(buf, i, e)
        if i >= e or buf[i] != 123:
            return r
        i = _ws(buf, i + 1, e)
        if i < e and buf[i] == 125:
            i += 1
        else:
            while True:
                if i >= e or buf[i] != 34:
                    return r
                end = _string_end(buf, i + 1, e)
                if end < 0:
                    return r
                f = _field(buf, i + 1, end, keys, key_starts)
                if f >= _REFUSED:  # an alias of a level key: the row parser's case
                    return r
                if f >= 0:
                    if seen & (1 << f):  # a known key twice: orjson keeps the last, the row parser decides
                        return r
                    seen |= 1 << f
                i = _ws(buf, end + 1, e)
                if i >= e or buf[i] != 58:
                    return r
                i = _ws(buf, i + 1, e)
                if i >= e:
                    return r
                c = buf[i]
                if c == 34:
                    end = _string_end(buf, i + 1, e)
                    if end < 0 or (0 <= f < _ITEM):  # a number field given as text
                        return r
                    if f >= _ITEM:
                        texts[r, f - _ITEM, 0] = i + 1
                        texts[r, f - _ITEM, 1] = end
                    i = end + 1
                elif c == 45 or 48 <= c <= 57:
                    i, value, ok = _number(buf, i, e, pow10)
                    if not ok or f >= _ITEM:  # a text field given as a number
                        return r
                    if f >= 0:
                        numbers[r, f] = value
                elif c == 110 and _literal(buf, i, e, null):
                    if 0 <= f < N_NUMBERS - 1 or f == _ITEM:  # a level, stock or price or the id: null
                        return r
                    i += 4
                elif c == 116 and _literal(buf, i, e, true):
                    if f >= 0:
                        return r
                    i += 4
                elif c == 102 and _literal(buf, i, e, false):
                    if f >= 0:
                        return r
                    i += 5
                else:  # an object, an array or not JSON
                    return r
                i = _ws(buf, i, e)
                if i < e and buf[i] == 44:
                    i = _ws(buf, i + 1, e)
                    continue
                if i < e and buf[i] == 125:
                    i += 1
                    break
                return r
        if _ws(buf, i, e) != e or not seen & (1 << _ITEM):
            return r
    return -1


@njit(cache=True, nogil=True)
def _join(buf, spans):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    size = 0
    for r in range(spans.shape[0]):
        size += max(spans[r, 1] - spans[r, 0], 0) + 1
    out = np.empty(max(size - 1, 0), np.uint8)
    at = 0
    for r in range(spans.shape[0]):
        if r:
            out[at] = 0
            at += 1
        for j in range(spans[r, 0], spans[r, 1]):
            out[at] = buf[j]
            at += 1
    return out


_WORDS = tuple(np.frombuffer(w, np.uint8) for w in (b"null", b"true", b"false"))


@lru_cache(maxsize=8)  # one group field per detector: built once, not per batch
def _key_table(group_key: bytes) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The field keys' bytes end to end and where each starts (the group's at ``_GROUP``)."""
    keys = [k.encode() for k in FIELD_KEYS]
    keys[_GROUP] = group_key or b"\xff"  # no group field: a key no plain record holds
    return np.frombuffer(b"".join(keys), np.uint8), np.cumsum([0, *map(len, keys)]).astype(np.int64)


def scan_records(
    buf: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], group_key: bytes
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]] | None:
    """``(numbers, texts)`` of the records ``buf[starts[r]:starts[r+1]]``, or None when one is not a
    plain update: ``numbers[r]`` = stock, min, max, price, occurred_at (NaN: absent or null);
    ``texts[r]`` = (start, end) of the item id, event id and group in ``buf`` (-1: absent or null)."""
    n = starts.size - 1
    numbers = np.full((n, N_NUMBERS), np.nan)
    texts = np.full((n, 3, 2), -1, np.int64)
    kernel: Callable[..., int] = _scan  # numba's Dispatcher types no kernel's arguments
    if kernel(buf, starts, *_key_table(group_key), _POW10, *_WORDS, numbers, texts) >= 0:
        return None
    return numbers, texts


def joined_spans(buf: npt.NDArray[np.uint8], spans: npt.NDArray[np.int64]) -> bytes:
    """The bytes of each span (start, end) of ``buf``, NUL between them (absent spans: empty)."""
    return bytes(_join(buf, spans))


def warm_up_scan() -> None:
    """Run the kernels once on a scratch record: compiled, or loaded from numba's cache."""
    raw = b'{"item_id": "a", "price": 1.5, "stock_quantity": -0, "event_id": null, "x": true, "y": false}'
    found = scan_records(np.frombuffer(raw, np.uint8), np.array([0, len(raw)], np.int64), b"g")
    if found is not None:
        joined_spans(np.frombuffer(raw, np.uint8), found[1][:, 0])
