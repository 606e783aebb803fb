"""The hash index of :class:`consumer.scoring.state.table.PartitionTable`: its probe and its second
id hash, as compiled loops.

Pure arithmetic on arrays, so it lives beside the decide kernel: the same warm-up
(:func:`detection.warmup.warm_up`, and the image's numba cache) compiles it before a model decides.
Linear probing over int32 slots (-1 = empty), each key identified by two 64-bit hashes; a vectorised
numpy probe needs ~10 array passes per round, this one touches each probed slot once. The second
hash (FNV-1a over the id's UTF-8 bytes, then MurmurHash3's 64-bit finaliser) is computed for a
batch's ids in one pass over their joined bytes: no string built per id.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

__all__ = ["byte_hashes", "find_rows", "warm_up_probe"]

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
def _fnv_fmix(blob, ends, out):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    start = 0
    for i in range(ends.size):
        h = np.uint64(0xCBF29CE484222325)
        for j in range(start, ends[i]):
            h = (h ^ np.uint64(blob[j])) * np.uint64(0x100000001B3)
        h ^= h >> np.uint64(33)  # fmix64: every input bit reaches every output bit
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB93F53FE1C4F)
        h ^= h >> np.uint64(33)
        out[i] = h
        start = ends[i]


def byte_hashes(blob: npt.NDArray[np.uint8], ends: npt.NDArray[np.int64]) -> Hashes:
    """A 64-bit hash of each byte string ``blob[ends[i-1]:ends[i]]`` (the first from 0)."""
    out = np.empty(ends.size, np.uint64)
    if ends.size:
        _fnv_fmix(blob, ends, out)
    return out


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
    one = np.ones(1, np.uint64)
    find_rows(np.array([0, -1], np.int32), one, one, np.array([1, 3], np.uint64), np.array([1, 1], np.uint64))
