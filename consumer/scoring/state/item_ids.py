"""A batch's item ids as the state tables index them: two 64-bit hashes per id, and deduplication.

Each id is identified by ``hash(id)`` (SipHash, salted per process: the index never leaves it) and
FNV-1a of its UTF-8 bytes with a 64-bit finaliser (:func:`detection.probe_kernel.byte_hashes`);
128 bits, collision odds ~1e-26 for 1M ids (:mod:`.table`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from consumer.scoring.state.id_blob import IdBlob

__all__ = ["Hashes", "distinct", "first_hashes", "id_hashes", "second_hashes"]

RowArray = npt.NDArray[np.intp]
Hashes = tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]  # (first, second) hash of each id


def id_hashes(item_ids: Sequence[str]) -> Hashes:
    """The two 64-bit hashes of each id."""
    return first_hashes(item_ids), second_hashes(item_ids)


def first_hashes(item_ids: Sequence[str]) -> npt.NDArray[np.uint64]:
    """``hash(id)``: cached by each ``str``, so cheap for ids hashed before."""
    return np.fromiter(map(hash, item_ids), dtype=np.int64, count=len(item_ids)).view(np.uint64)


def second_hashes(item_ids: Sequence[str]) -> npt.NDArray[np.uint64]:
    """FNV-1a over each id's UTF-8 (:func:`detection.probe_kernel.byte_hashes`), in one pass."""
    from detection.probe_kernel import byte_hashes  # numba loads with the first table use, not at import

    ids = IdBlob.encode(item_ids, errors="surrogatepass")  # any str hashes (a lone surrogate too)
    hashes: npt.NDArray[np.uint64] = byte_hashes(ids.data, np.cumsum(ids.lengths))
    return hashes


def distinct(item_ids: Sequence[str]) -> tuple[list[str], RowArray]:
    """The distinct ids (first-occurrence order) and, per id of ``item_ids``, its index among them."""
    n = len(item_ids)
    first: dict[str, int] = {}
    at = np.fromiter(map(first.setdefault, item_ids, range(n)), np.intp, count=n)  # each id's first position
    if len(first) == n:
        return list(first), at
    is_first = at == np.arange(n)
    return list(first), (np.cumsum(is_first) - 1)[at]
