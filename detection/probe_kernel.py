"""The hash index of :class:`consumer.scoring.state.table.PartitionTable`: its probe and its second
id hash, as compiled loops.

Pure arithmetic on arrays, so it lives beside the decide kernel: the same warm-up
(:func:`detection.warmup.warm_up`, and the image's numba cache) compiles it before a model decides.
Linear probing over int32 slots (-1 = empty), each key identified by two 64-bit hashes; a vectorised
numpy probe needs ~10 array passes per round, this one touches each probed slot once. The second
hash (FNV-1a over the id's UTF-8 bytes, then MurmurHash3's 64-bit finaliser) is computed for a
batch's ids in one pass over their joined bytes: no string built per id. A batch's ids are
deduplicated by that hash, then their bytes (:func:`distinct_bytes`): no dict of its strings.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

__all__ = ["byte_hashes", "distinct_bytes", "distinct_joined", "find_rows", "row_bytes", "warm_up_probe"]

Hashes = npt.NDArray[np.uint64]


@njit(cache=True, nogil=True)
def _probe(slots, t1, t2, h1, h2, out):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202, PLR0917
    mask = slots.size - 1
    for i in range(h1.size):
        a, b = h1[i], h2[i]
        pos = np.intp(a & np.uint64(mask))
        while True:
            row = slots[pos]
            if row < 0:
                out[i] = -1
                break
            if t1[row] == a and t2[row] == b:
                out[i] = row
                break
            pos = (pos + 1) & mask


@njit(cache=True, nogil=True)
def _fnv(blob, start, end):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    h = np.uint64(0xCBF29CE484222325)
    for j in range(start, end):
        h = (h ^ np.uint64(blob[j])) * np.uint64(0x100000001B3)
    h ^= h >> np.uint64(33)  # fmix64: every input bit reaches every output bit
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB93F53FE1C4F)
    h ^= h >> np.uint64(33)
    return h


@njit(cache=True, nogil=True)
def _fnv_fmix(blob, ends, out):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    start = 0
    for i in range(ends.size):
        out[i] = _fnv(blob, start, ends[i])
        start = ends[i]


@njit(cache=True, nogil=True)
def _split(blob, starts, ends):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    """Split ``blob`` at its zero bytes into ``starts.size`` pieces; False if it holds another count."""
    start = 0
    for i in range(starts.size):
        end = start
        while end < blob.size and blob[end] != 0:
            end += 1
        if end == blob.size and i < starts.size - 1:
            return False
        starts[i], ends[i] = start, end
        start = end + 1
    return start == blob.size + 1


@njit(cache=True, nogil=True)
def _piece_hashes(blob, starts, ends, out):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    for i in range(starts.size):
        out[i] = _fnv(blob, starts[i], ends[i])


@njit(cache=True, nogil=True)
def _same(blob, a, b, n):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    for j in range(n):  # noqa: SIM110 (numba compiles a plain loop, not all() of a generator)
        if blob[a + j] != blob[b + j]:
            return False
    return True


@njit(cache=True, nogil=True)
def _distinct(blob, starts, ends, hashes, slots, u, first):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202, PLR0917
    mask = slots.size - 1
    k = 0
    for i in range(ends.size):
        start, end = starts[i], ends[i]
        h = hashes[i]
        pos = np.intp(h & np.uint64(mask))
        while True:
            j = slots[pos]
            if j < 0:  # a new id
                slots[pos], first[k], u[i] = k, i, k
                k += 1
                break
            f = first[j]
            if (
                hashes[f] == h
                and ends[f] - starts[f] == end - start
                and _same(blob, starts[f], start, end - start)
            ):
                u[i] = j  # the same hash and the same bytes: the same id
                break
            pos = (pos + 1) & mask
    return k


@njit(cache=True, nogil=True)
def _row_bytes(ends, blob, rows):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    lengths = np.empty(rows.size, np.int64)
    for i in range(rows.size):
        r = rows[i]
        lengths[i] = np.int64(ends[r]) - (np.int64(ends[r - 1]) if r > 0 else 0)
    data = np.empty(lengths.sum(), np.uint8)
    k = 0
    for i in range(rows.size):
        start = np.int64(ends[rows[i]]) - lengths[i]
        for j in range(lengths[i]):
            data[k + j] = blob[start + j]
        k += lengths[i]
    return data, lengths


def byte_hashes(blob: npt.NDArray[np.uint8], ends: npt.NDArray[np.int64]) -> Hashes:
    """A 64-bit hash of each byte string ``blob[ends[i-1]:ends[i]]`` (the first from 0)."""
    out = np.empty(ends.size, np.uint64)
    if ends.size:
        _fnv_fmix(blob, ends, out)
    return out


def distinct_bytes(
    blob: npt.NDArray[np.uint8], ends: npt.NDArray[np.int64], hashes: Hashes | None = None
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], Hashes]:
    """The distinct byte strings of ``blob`` (as :func:`byte_hashes` splits it): per string, the
    index of its first occurrence among the distinct ones (first-occurrence order), and per
    distinct one, its first position and hash (``hashes``: each string's, else
    :func:`byte_hashes`'s; equal hashes are told apart by the bytes).

    The index is keyed by that unsalted hash, so crafted colliding ids cost more probes: at most
    n²/2 for n strings, and a batch holds at most ``max_poll_records`` of them.
    """
    if hashes is None:
        hashes = byte_hashes(blob, ends)
    starts = np.zeros(ends.size, np.int64)
    starts[1:] = ends[:-1]
    return _distinct_pieces(blob, starts, ends, hashes)


def distinct_joined(
    joined: npt.NDArray[np.uint8], n: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], Hashes] | None:
    """:func:`distinct_bytes` of ``n`` strings joined by zero bytes (their lengths need no pass of
    their own); None when ``joined`` splits into another count (a string holds a zero byte)."""
    starts, ends = np.empty(n, np.int64), np.empty(n, np.int64)
    if n and not _split(joined, starts, ends):
        return None
    hashes = np.empty(n, np.uint64)
    if n:
        _piece_hashes(joined, starts, ends, hashes)
    return _distinct_pieces(joined, starts, ends, hashes)


def _distinct_pieces(
    blob: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64], hashes: Hashes
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], Hashes]:
    n = ends.size
    u = np.empty(n, np.intp)
    first = np.empty(n, np.intp)
    slots = np.full(1 << max(4, (2 * n - 1).bit_length()), -1, np.intp)  # load <= 1/2
    k = _distinct(blob, starts, ends, hashes, slots, u, first) if n else 0
    return u, first[:k], hashes[first[:k]]


def row_bytes(
    ends: npt.NDArray[np.uint32], blob: npt.NDArray[np.uint8], rows: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The byte strings ``rows`` of ``blob`` (row ``r`` is ``blob[ends[r-1]:ends[r]]``, the first from
    0) end to end, and their lengths."""
    if not rows.size:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64)
    data, lengths = _row_bytes(ends, blob, rows)
    return data, lengths


def find_rows(
    slots: npt.NDArray[np.int32], t1: Hashes, t2: Hashes, h1: Hashes, h2: Hashes
) -> npt.NDArray[np.intp]:
    """Row of each key (``h1``, ``h2``) in the index ``slots`` over row hashes ``t1``/``t2``; -1 if absent.

    ``slots`` has a power-of-two size and at least one empty slot (its load stays <= 1/2).
    """
    out = np.empty(h1.size, np.intp)
    if h1.size:
        _probe(slots, t1, t2, h1, h2, out)
    return out


def warm_up_probe() -> None:
    """Run the kernel once on a scratch index: compiled, or loaded from numba's cache."""
    byte_hashes(np.frombuffer(b"warm-up", np.uint8), np.array([4, 7], np.int64))
    distinct_bytes(np.frombuffer(b"upup", np.uint8), np.array([2, 4], np.int64))
    distinct_joined(np.frombuffer(b"up\0up", np.uint8), 2)
    row_bytes(np.array([2, 4], np.uint32), np.frombuffer(b"upup", np.uint8), np.array([1, 0], np.intp))
    one = np.ones(1, np.uint64)
    find_rows(np.array([0, -1], np.int32), one, one, np.array([1, 3], np.uint64), np.array([1, 1], np.uint64))
