"""The changelog of the item states: topic name, record format, and decoding a restore.

One compacted topic, one partition per input partition (changes of input partition ``p`` go to
changelog partition ``p``); key = the item id (UTF-8), value = :data:`CHANGELOG_VALUE` (88 bytes,
little-endian): the detector's 80-byte record (:data:`detection.STATE_DTYPE`) followed by the input
offset of the update that produced it. Issue 12's episode fields can extend the value: a reader
tells the layouts apart by length (88 bytes = this one).
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
from detection.item_state import STATE_DTYPE, STATE_SIZE

__all__ = [
    "CHANGELOG_VALUE",
    "DEFAULT_TEMPLATE",
    "Restored",
    "changelog_records",
    "changelog_topic",
    "decode",
]

CHANGELOG_VALUE: Final = np.dtype([("state", STATE_DTYPE), ("offset", "<i8")])
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
    n, size = len(item_ids), CHANGELOG_VALUE.itemsize
    values = np.empty((n, size), np.uint8)  # built as bytes: a structured copy is ~20x slower
    values[:, :STATE_SIZE] = np.ascontiguousarray(records, STATE_DTYPE).view(np.uint8).reshape(n, STATE_SIZE)
    values[:, STATE_SIZE:] = np.asarray(offsets, "<i8").reshape(n, 1).view(np.uint8)
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
    size = CHANGELOG_VALUE.itemsize
    if None in keys or None in values or set(map(len, values)) != {size}:  # type: ignore[arg-type]  # the rare case, by record
        usable = [
            k for k, (key, v) in enumerate(zip(keys, values, strict=True)) if key and v and len(v) == size
        ]
        keys, values = [keys[k] for k in usable], [values[k] for k in usable]
    decoded = np.frombuffer(b"".join(values), CHANGELOG_VALUE)  # type: ignore[arg-type]
    mask = decoded["offset"] < committed
    kept = int(np.count_nonzero(mask))
    chosen = decoded if kept == n else decoded[mask]
    ids = list(map(bytes.decode, keys if kept == n else compress(keys, mask.tolist())))  # type: ignore[arg-type]
    state_bytes = np.ascontiguousarray(chosen.view(np.uint8).reshape(-1, size)[:, : STATE_DTYPE.itemsize])
    states = state_bytes.view(STATE_DTYPE).reshape(-1)  # a byte copy: 20x a structured one
    return Restored(ids, states, chosen["offset"].astype(np.int64), read=n, ignored=n - kept)
