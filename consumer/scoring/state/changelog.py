"""The changelog of the item states: topic name, record format, and decoding a restore.

One compacted topic, one partition per input partition (changes of input partition ``p`` go to
changelog partition ``p``); key = the item id (UTF-8), value = :data:`CHANGELOG_VALUE` (120 bytes,
little-endian): the 112-byte item record (:data:`.record.ITEM_DTYPE`: the detector's history, then
the alert episode) followed by the input offset of the update that produced it. A reader tells the
layouts apart by length: 88-byte values (:data:`LEGACY_VALUE`, written before episodes: the
detector's record and the offset) restore with no episode open.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from typing import Final

import numpy as np
import numpy.typing as npt

from consumer.ports import OutputRecord
from consumer.scoring.state.record import ITEM_DTYPE, as_items, join
from detection.item_state import STATE_DTYPE

__all__ = [
    "CHANGELOG_VALUE",
    "DEFAULT_TEMPLATE",
    "LEGACY_VALUE",
    "Restored",
    "changelog_records",
    "changelog_topic",
    "decode",
]

CHANGELOG_VALUE: Final = np.dtype([("state", ITEM_DTYPE), ("offset", "<i8")])
LEGACY_VALUE: Final = np.dtype([("state", STATE_DTYPE), ("offset", "<i8")])  # before episodes
DEFAULT_TEMPLATE: Final = "{group_id}.{input_topic}.state"
_NOT_TOPIC_CHARS: Final = re.compile(r"[^a-zA-Z0-9._-]")


def changelog_topic(template: str, *, group_id: str, input_topic: str) -> str:
    """The changelog topic of a group reading ``input_topic`` (characters Kafka refuses become ``_``)."""
    name = template.format(group_id=group_id, input_topic=input_topic)
    return _NOT_TOPIC_CHARS.sub("_", name)[:249]


def changelog_records(
    topic: str, partition: int, item_ids: Sequence[str], records: npt.NDArray[np.void], offsets: npt.ArrayLike
) -> list[OutputRecord]:
    """One output per item: its new record and the input offset that produced it."""
    n, size, item = len(item_ids), CHANGELOG_VALUE.itemsize, ITEM_DTYPE.itemsize
    values = np.empty((n, size), np.uint8)  # built as bytes: a structured copy is ~20x slower
    values[:, :item] = np.ascontiguousarray(as_items(records)).view(np.uint8).reshape(n, item)
    values[:, item:] = np.asarray(offsets, "<i8").reshape(n, 1).view(np.uint8)
    raw = values.tobytes()
    chunks = map(raw.__getitem__, map(slice, range(0, n * size, size), range(size, n * size + 1, size)))
    keys = map(str.encode, item_ids)
    return list(map(OutputRecord, repeat(topic), keys, chunks, map(list, repeat((), n)), repeat(partition)))


@dataclass(frozen=True, slots=True, eq=False)
class Restored:
    """The usable records of one changelog partition, in order (an item may repeat: the last wins)."""

    item_ids: list[str]
    records: npt.NDArray[np.void]
    offsets: npt.NDArray[np.int64]
    read: int  # changelog records read
    ignored: int  # records skipped: input not committed yet, or a value of another layout


def decode(keys: Sequence[bytes | None], values: Sequence[bytes | None], *, committed: int) -> Restored:
    """The records whose input offset is below ``committed``, in changelog order (later ones of an
    item win: :meth:`PartitionTable.load` keeps the last).

    A change whose input was not committed yet is ignored: that input is read again after the
    restore and decided against the state before it (Quix's checkpointing rule), so a crash
    between the changelog write and the offset commit never applies an update twice.
    """
    n = len(keys)
    size, legacy = CHANGELOG_VALUE.itemsize, LEGACY_VALUE.itemsize
    mixed = None in keys or None in values
    sizes = set() if mixed else set(map(len, values))  # type: ignore[arg-type]
    if mixed or sizes - {size, legacy}:  # the rare case, by record
        usable = [
            k
            for k, (key, v) in enumerate(zip(keys, values, strict=True))
            if key and v and len(v) in (size, legacy)
        ]
        keys, values = [keys[k] for k in usable], [values[k] for k in usable]
        sizes = set(map(len, values))  # type: ignore[arg-type]
    if legacy in sizes:  # written before episodes: widened, in order
        values = [v if len(v) == size else _widen(v) for v in values]  # type: ignore[arg-type]
    decoded = np.frombuffer(b"".join(values), CHANGELOG_VALUE)  # type: ignore[arg-type]
    mask = decoded["offset"] < committed
    kept = int(np.count_nonzero(mask))
    chosen = decoded if kept == n else decoded[mask]
    ids = list(map(bytes.decode, keys if kept == n else compress(keys, mask.tolist())))  # type: ignore[arg-type]
    state_bytes = np.ascontiguousarray(chosen.view(np.uint8).reshape(-1, size)[:, : ITEM_DTYPE.itemsize])
    states = state_bytes.view(ITEM_DTYPE).reshape(-1)  # a byte copy: 20x a structured one
    return Restored(ids, states, chosen["offset"].astype(np.int64), read=n, ignored=n - kept)


def _widen(value: bytes) -> bytes:
    old = np.frombuffer(value, LEGACY_VALUE)
    new = np.zeros(1, CHANGELOG_VALUE)
    new["state"], new["offset"] = join(old["state"]), old["offset"]
    return new.tobytes()
