"""Packed changelog records: many item states in one Kafka record (the changelog's cost per byte).

A client's cost is per record (kafka-python ~34 us of Python per record, librdkafka ~3 us), so a
flush writes a few records of up to :data:`MAX_PACK_BYTES` per partition instead of one per item.
Value layout (little-endian)::

    header   16 B  magic b"SWPK", version u8, kind u8, reserved u16, count u32, ids_bytes u32
    values   count x 120 B  CHANGELOG_VALUE (item record + input offset), as in a per-item record
    lengths  count x u32    the UTF-8 length of each item id
    ids      ids_bytes      the item ids, UTF-8, concatenated

Key: :data:`PACK_PREFIX` plus a random suffix, unique per record, so compaction (a changelog
created before packed records is compacted) never removes one; the log is bounded by truncation
instead (:mod:`.rolling`). Items in a record are in log order: a later one (in the record, or in a
later record) overrides an earlier one, as with per-item records. A value that does not parse is
refused whole (:func:`unpack` returns None; the restore counts and logs it): a record is written
in one piece, so a partial one is a forgery or a bug, never an interrupted write.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from consumer.ports import OutputRecord
from consumer.scoring.state.id_blob import IdBlob

__all__ = ["MAX_PACK_BYTES", "PACK_PREFIX", "is_pack", "pack", "pack_records", "unpack"]

PACK_PREFIX: Final = b"\x00stockwatch.pack."
MAX_PACK_BYTES: Final = 512 * 1024  # well under the broker's and the producers' 1 MiB message limit
MAGIC: Final = b"SWPK"
VERSION: Final = 1
KIND_ITEMS: Final = 0
_HEADER: Final = struct.Struct("<4sBBHII")


def is_pack(key: bytes | None) -> bool:
    return key is not None and key.startswith(PACK_PREFIX)


def pack(item_ids: IdBlob | Sequence[bytes], values: npt.NDArray[np.uint8]) -> bytes:
    """One packed value of ``item_ids`` (UTF-8) and their CHANGELOG_VALUE rows (``values``: n x itemsize bytes)."""
    ids = item_ids if isinstance(item_ids, IdBlob) else IdBlob.of(item_ids)
    header = _HEADER.pack(MAGIC, VERSION, KIND_ITEMS, 0, len(ids), ids.data.size)
    lengths = ids.lengths.astype(np.uint32)
    return b"".join((header, np.ascontiguousarray(values).tobytes(), lengths.tobytes(), ids.data.tobytes()))


def pack_records(
    topic: str, partition: int, ids: IdBlob | Sequence[bytes], values: npt.NDArray[np.uint8]
) -> list[OutputRecord]:
    """``ids`` (UTF-8) with their value rows as packed records of at most ~MAX_PACK_BYTES each, in order."""
    blob = ids if isinstance(ids, IdBlob) else IdBlob.of(ids)
    width = values.shape[1] if values.ndim == 2 else 0
    n = len(blob)
    ends = np.cumsum(blob.lengths + (width + 4))  # bytes up to and including each item
    id_ends = np.cumsum(blob.lengths)  # the same in the id buffer
    out: list[OutputRecord] = []
    start, used = 0, 0
    while start < n:
        stop = int(np.searchsorted(ends, used + MAX_PACK_BYTES - _HEADER.size, side="right"))
        stop = max(stop, start + 1)  # an item larger than a record still goes (ids are <= 256 chars)
        first = int(id_ends[start - 1]) if start else 0
        piece = IdBlob(blob.data[first : int(id_ends[stop - 1])], blob.lengths[start:stop])
        key = PACK_PREFIX + os.urandom(12).hex().encode()
        out.append(OutputRecord(topic, key, pack(piece, values[start:stop]), partition=partition))
        used, start = int(ends[stop - 1]), stop
    return out


def unpack(value: bytes, width: int) -> tuple[list[bytes], npt.NDArray[np.uint8]] | None:
    """The item ids (UTF-8 bytes) and value rows (n x ``width`` bytes) of a packed value, or None
    for one that does not parse (another version or kind, truncated, lengths that do not add up)."""
    if len(value) < _HEADER.size:
        return None
    magic, version, kind, _, count, id_bytes = _HEADER.unpack_from(value)
    if magic != MAGIC or version != VERSION or kind != KIND_ITEMS:
        return None
    at_lengths = _HEADER.size + count * width
    at_ids = at_lengths + 4 * count
    if len(value) != at_ids + id_bytes:
        return None
    lengths = np.frombuffer(value, np.uint32, count, at_lengths).astype(np.int64)
    if int(lengths.sum()) != id_bytes:
        return None
    rows = np.frombuffer(value, np.uint8, count * width, _HEADER.size).reshape(count, width)
    ends = np.cumsum(lengths) + at_ids
    starts = (ends - lengths).tolist()
    ids = list(map(value.__getitem__, map(slice, starts, ends.tolist())))
    return ids, rows
