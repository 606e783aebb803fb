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
from typing import Final

import numpy as np
import numpy.typing as npt

from consumer.ports import OutputRecord
from detection.item_state import STATE_DTYPE

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
    values = np.zeros(len(item_ids), CHANGELOG_VALUE)
    values["state"] = records
    values["offset"] = offsets
    raw = values.tobytes()
    size = CHANGELOG_VALUE.itemsize
    return [
        OutputRecord(topic, item_id.encode(), raw[k * size : (k + 1) * size], partition=partition)
        for k, item_id in enumerate(item_ids)
    ]


@dataclass(frozen=True, slots=True, eq=False)
class Restored:
    """The latest usable record of each item of one changelog partition."""

    item_ids: list[str]
    records: npt.NDArray[np.void]
    offsets: npt.NDArray[np.int64]
    read: int  # changelog records read
    ignored: int  # records skipped: input not committed yet, or a value of another layout


def decode(keys: Sequence[bytes | None], values: Sequence[bytes | None], *, committed: int) -> Restored:
    """The last record per item whose input offset is below ``committed`` (changelog order).

    A change whose input was not committed yet is ignored: that input is read again after the
    restore and decided against the state before it (Quix's checkpointing rule), so a crash
    between the changelog write and the offset commit never applies an update twice.
    """
    size = CHANGELOG_VALUE.itemsize
    usable = [
        k
        for k, (key, value) in enumerate(zip(keys, values, strict=True))
        if key is not None and value is not None and len(value) == size
    ]
    raw = b"".join([values[k] for k in usable])  # type: ignore[misc]
    decoded = np.frombuffer(raw, CHANGELOG_VALUE)
    keep = np.flatnonzero(decoded["offset"] < committed)
    last: dict[bytes, int] = {}
    for j in keep.tolist():  # later records of a key win
        last[keys[usable[j]]] = j  # type: ignore[index]
    picked = np.fromiter(last.values(), dtype=np.intp, count=len(last))
    chosen = decoded[picked]
    return Restored(
        [key.decode() for key in last],
        chosen["state"].copy(),
        chosen["offset"].astype(np.int64),
        read=len(keys),
        ignored=len(keys) - keep.size,
    )
