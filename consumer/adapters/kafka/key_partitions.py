"""The partition of each keyed output of a publish, all keys at once.

kafka-python's default partitioner is the Java client's (murmur2 of the key bytes, made positive,
modulo the topic's partition count, over its partitions in order) computed in Python for each
record: ~3 µs of a ~22 µs ``send``. :func:`key_partitions` computes the same partitions for a
publish's keys in a few numpy passes, and the sink hands them to ``send`` as explicit partitions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from consumer.ports import OutputRecord

__all__ = ["MIN_KEYS", "key_partitions", "murmur2"]

MIN_KEYS: Final = 32  # fewer keyed outputs: the producer's own partitioner costs less than numpy's passes
MAX_KEY_BYTES: Final = 128  # keys are padded to the longest: a dead letter's raw input key may be ~1 MB
_SEED: Final = np.uint32(0x9747B28C)
_M: Final = np.uint32(0x5BD1E995)


def murmur2(keys: Sequence[bytes]) -> npt.NDArray[np.uint32]:
    """``org.apache.kafka.common.utils.Utils.murmur2`` of each key (as kafka-python's ``murmur2``)."""
    n = len(keys)
    lengths = np.fromiter(map(len, keys), np.int64, count=n)
    width = (int(lengths.max()) + 3) // 4 * 4 if n else 0
    padded = np.zeros((n, max(width, 4)), np.uint8)  # each key's bytes, zero-padded to whole words
    ends = np.cumsum(lengths)
    row_of_byte = np.repeat(np.arange(n), lengths)
    padded[row_of_byte, np.arange(int(ends[-1]) if n else 0) - (ends - lengths)[row_of_byte]] = np.frombuffer(
        b"".join(keys), np.uint8
    )
    words = padded.view("<u4")
    whole = lengths // 4
    h = _SEED ^ lengths.astype(np.uint32)
    for i in range(width // 4):  # the key's whole 4-byte words
        k = words[:, i] * _M
        k ^= k >> np.uint32(24)
        k *= _M
        h = np.where(i < whole, (h * _M) ^ k, h)
    extra, base, rows = lengths % 4, whole * 4, np.arange(n)
    for j, shift in ((2, 16), (1, 8)):  # the last 1-3 bytes, as the Java switch falls through
        tail = padded[rows, np.minimum(base + j, padded.shape[1] - 1)].astype(np.uint32) << np.uint32(shift)
        h = np.where(extra > j, h ^ tail, h)
    h = np.where(extra > 0, (h ^ padded[rows, np.minimum(base, padded.shape[1] - 1)]) * _M, h)
    h ^= h >> np.uint32(13)
    h *= _M
    h ^= h >> np.uint32(15)
    return h.astype(np.uint32)


def key_partitions(
    outputs: Sequence[OutputRecord], partitions_of: Callable[[str], set[int] | None]
) -> list[int | None]:
    """Each output's partition: its own, else its key's under the default partitioner when
    ``partitions_of(topic)`` (the producer's metadata, never blocking) knows the topic, else None
    (the producer decides: a record without a key, a key over MAX_KEY_BYTES, a topic not known)."""
    out: list[int | None] = [o.partition for o in outputs]
    keyed = [
        i
        for i, o in enumerate(outputs)
        if o.partition is None and o.key is not None and len(o.key) <= MAX_KEY_BYTES
    ]
    if len(keyed) < MIN_KEYS:
        return out
    by_topic: dict[str, list[int]] = {}
    for i in keyed:
        by_topic.setdefault(outputs[i].topic, []).append(i)
    for topic, rows in by_topic.items():
        known = partitions_of(topic)
        if not known:
            continue
        ordered = np.array(sorted(known), np.int64)
        hashes = murmur2([outputs[i].key for i in rows])  # type: ignore[misc]  # keyed: not None
        picked = ordered[(hashes & np.uint32(0x7FFFFFFF)) % np.uint32(ordered.size)].tolist()
        for i, p in zip(rows, picked, strict=True):
            out[i] = p
    return out
