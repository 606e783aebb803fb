"""The changelog of the item states: topic name, record formats, and decoding a restore.

One topic, one partition per input partition (changes of input partition ``p`` go to changelog
partition ``p``). Item states are written as packed records (:mod:`.packed`: many
:data:`CHANGELOG_VALUE` rows per Kafka record); the layout before them, still restored, is one
record per item: key = the item id (UTF-8), value = :data:`CHANGELOG_VALUE` (120 bytes,
little-endian): the 112-byte item record (:data:`.record.ITEM_DTYPE`: the detector's history, then
the alert episode) followed by the input offset of the update that produced it. A reader tells the
layouts apart by length: 88-byte values (:data:`LEGACY_VALUE`, written before episodes: the
detector's record and the offset) restore with no episode open.

Packed records are never 88 or 120 bytes either: a version before them ignores them (a downgrade
restores none of the state written since). Two more kinds of record, never 88 or 120 bytes:

* :data:`LINEAGE_KEY`, one per partition and batch (and at-least-once flush), a small JSON object (:class:`Lineage`): the
  group field the records are under and the input offset the `default` path decided up to;
* :data:`RESET_KEY`, written first by a batch that starts the partition afresh: every record
  before the last one is void, whatever its input offset (a restore that finds the state stale —
  the seed decided inputs since, or another group field — starts afresh from the inventory seed;
  docs/consume.md § Per-item state). Position, not offset: a fresh start that is rewound or
  redelivered decides inputs again, and records of the state before it must stay void.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from typing import Final

import numpy as np
import numpy.typing as npt
import orjson

from config.checks import changelog_topic
from consumer.ports import OutputRecord
from consumer.scoring.state.id_blob import IdBlob
from consumer.scoring.state.packed import is_pack, pack_records, unpack
from consumer.scoring.state.record import ITEM_DTYPE, as_items, join
from consumer.scoring.state.validity import possible
from detection.item_state import STATE_DTYPE

__all__ = [
    "CHANGELOG_VALUE",
    "DEFAULT_TEMPLATE",
    "LEGACY_VALUE",
    "LINEAGE_KEY",
    "RESET_KEY",
    "Lineage",
    "Restored",
    "changelog_records",
    "changelog_topic",
    "changelog_values",
    "decode",
    "item_records",
    "lineage_record",
    "reset_record",
]

CHANGELOG_VALUE: Final = np.dtype([("state", ITEM_DTYPE), ("offset", "<i8")])
LEGACY_VALUE: Final = np.dtype([("state", STATE_DTYPE), ("offset", "<i8")])  # before episodes
DEFAULT_TEMPLATE: Final = "{group_id}.{input_topic}.state"
# Items with these ids (NUL first) would only lose their own history.
LINEAGE_KEY: Final = b"\x00stockwatch.lineage"
RESET_KEY: Final = b"\x00stockwatch.reset"
_RESET_VALUE: Final = b'{"reset": true}'  # not empty: an empty value would be a tombstone
_STATE_FIELD: Final = np.dtype(
    {
        "names": ["state"],
        "formats": [f"V{ITEM_DTYPE.itemsize}"],
        "offsets": [0],
        "itemsize": CHANGELOG_VALUE.itemsize,
    }
)  # a value's item record as raw bytes


@dataclass(frozen=True, slots=True)
class Lineage:
    """What a partition's state follows: its group field and the input offset decided up to."""

    group_field: str
    after: int

    def encode(self) -> bytes:
        data = orjson.dumps({"group_field": self.group_field, "after": self.after})
        while len(data) in (CHANGELOG_VALUE.itemsize, LEGACY_VALUE.itemsize):  # never a record's length
            data += b" "
        return data

    @classmethod
    def decode(cls, data: bytes | None) -> Lineage | None:
        """The lineage a value holds, or None for a value that is not one (ignored like a bad record)."""
        try:
            raw = orjson.loads(data or b"")
            return cls(str(raw["group_field"]), int(raw["after"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def lineage_record(topic: str, partition: int, lineage: Lineage) -> OutputRecord:
    return OutputRecord(topic, LINEAGE_KEY, lineage.encode(), partition=partition)


def reset_record(topic: str, partition: int) -> OutputRecord:
    """The fresh-start mark: it must precede the batch's records of ``partition``."""
    return OutputRecord(topic, RESET_KEY, _RESET_VALUE, partition=partition)


def changelog_values(records: npt.NDArray[np.void], offsets: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Each item's CHANGELOG_VALUE (its record, then the input offset) as rows of bytes."""
    n, item = records.shape[0], ITEM_DTYPE.itemsize
    values = np.empty((n, CHANGELOG_VALUE.itemsize), np.uint8)  # as bytes: a structured copy is ~20x slower
    values[:, :item] = np.ascontiguousarray(as_items(records)).view(np.uint8).reshape(n, item)
    values[:, item:] = np.asarray(offsets, "<i8").reshape(n, 1).view(np.uint8)
    return values


def changelog_records(
    topic: str, partition: int, item_ids: Sequence[str], records: npt.NDArray[np.void], offsets: npt.ArrayLike
) -> list[OutputRecord]:
    """Packed records (:mod:`.packed`) of the items' new records and the input offsets that produced them."""
    if not item_ids:
        return []
    return pack_records(topic, partition, IdBlob.encode(item_ids), changelog_values(records, offsets))


def item_records(
    topic: str, partition: int, item_ids: Sequence[str], records: npt.NDArray[np.void], offsets: npt.ArrayLike
) -> list[OutputRecord]:
    """One record per item, keyed by its id (the layout before packed records; still restored)."""
    n, size = len(item_ids), CHANGELOG_VALUE.itemsize
    raw = changelog_values(records, offsets).tobytes()
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
    ignored: int  # records skipped: input not committed yet, before a fresh start, or of another layout
    lineage: Lineage | None = None  # the last lineage record (None: a changelog written without them)
    refused: int = 0  # packed records that did not parse (logged by the store)
    # item states StockWatch never writes (NaN, out of range: :mod:`.validity`), None when there is
    # none; such a record ends its item's state (the item starts unknown), unless a later one follows
    void: npt.NDArray[np.bool_] | None = None
    uncommitted: int = 0  # item states left out because their input is not committed: read again
    # records of item states before the last fresh-start mark (another member may have written it)
    # or of another layout: their items start from the inventory seed
    voided: int = 0

    @property
    def dropped(self) -> int:
        """Item states of the changelog that are not possible ones (logged by the store)."""
        return 0 if self.void is None else int(np.count_nonzero(self.void))


def decode(
    keys: Sequence[bytes | None], values: Sequence[bytes | None], *, committed: int, fresh: bool = False
) -> Restored:
    """The item states after the last fresh-start mark whose input offset is below ``committed``, in
    changelog order (later ones of an item win: :meth:`PartitionTable.load` keeps the last), from
    per-item records and packed ones (:mod:`.packed`) alike. ``fresh``: none (the caller starts the
    partition afresh; the lineage is still read).

    A change whose input was not committed yet is ignored: that input is read again after the
    restore and decided against the state before it (Quix's checkpointing rule), so a crash
    between the changelog write and the offset commit never applies an update twice. A packed
    record that does not parse is ignored whole (counted in ``refused``), never a crash. An item
    state no version of StockWatch writes (:func:`.validity.possible`) is marked in ``void``.
    """
    n = len(keys)
    size = CHANGELOG_VALUE.itemsize
    if None in keys or None in values:  # tombstones: the rare case, by record
        usable = [k for k, (key, v) in enumerate(zip(keys, values, strict=True)) if key and v]
        keys, values = [keys[k] for k in usable], [values[k] for k in usable]
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))  # type: ignore[arg-type]
    per_item = (lengths == size) | (lengths == LEGACY_VALUE.itemsize)
    lineage, start, packs, voided = _marks(keys, values, per_item)
    ids: list[bytes] = []
    rows: list[npt.NDArray[np.uint8]] = []
    refused, prev = 0, start
    for k in [*packs, len(values)] if not fresh else []:
        if k > prev:  # the per-item records between two packed ones
            ok = per_item[prev:k].tolist()
            ids += compress(keys[prev:k], ok)  # type: ignore[arg-type]
            rows.append(_per_item(list(compress(values[prev:k], ok))))  # type: ignore[arg-type]
        if k < len(values):
            unpacked = unpack(values[k], size)  # type: ignore[arg-type]
            if unpacked is None:
                refused += 1
            else:
                ids += unpacked[0]
                rows.append(unpacked[1])
        prev = k + 1
    entries = len(ids)
    usable_records = int(np.count_nonzero(per_item[start:])) + len(packs) - refused if not fresh else 0
    decoded = np.concatenate(rows).view(CHANGELOG_VALUE).reshape(-1) if rows else np.zeros(0, CHANGELOG_VALUE)
    mask = decoded["offset"] < committed
    kept = int(np.count_nonzero(mask))
    every = kept == entries  # the usual restore: no structured copy (20x a byte copy)
    chosen = decoded if every else decoded[mask]
    picked = ids if every else list(compress(ids, mask.tolist()))
    try:
        texts = list(map(bytes.decode, picked))
    except UnicodeDecodeError:  # a key no input item has: a forged record, left out (and counted)
        utf8 = [_text(k) for k in picked]
        chosen = chosen[np.fromiter((i is not None for i in utf8), np.bool_, len(utf8))]
        texts = [i for i in utf8 if i is not None]
        kept = len(texts)
    states = (
        chosen.view(_STATE_FIELD)["state"].copy().view(ITEM_DTYPE)
    )  # one memcpy per row: 20x a structured copy
    offsets = chosen["offset"].astype(np.int64)
    ignored = (n - usable_records) + (entries - kept)  # records of no use, then item states not used
    void = ~possible(states)
    return Restored(
        texts, states, offsets, read=n, ignored=ignored, lineage=lineage, refused=refused,
        void=void if void.any() else None, uncommitted=int(mask.size) - int(np.count_nonzero(mask)),
        voided=voided,
    )  # fmt: skip


def _marks(
    keys: Sequence[bytes | None], values: Sequence[bytes | None], per_item: npt.NDArray[np.bool_]
) -> tuple[Lineage | None, int, list[int], int]:
    """The last lineage, where the records after the last fresh-start mark start, the packed records
    after it, and how many item-state records are void (before the mark, or of another layout)."""
    lineage, start, packs, voided = None, 0, list[int](), 0
    for k in np.flatnonzero(~per_item).tolist():  # lineage, reset and packed records: few
        if keys[k] == LINEAGE_KEY:
            lineage = Lineage.decode(values[k]) or lineage
        elif keys[k] == RESET_KEY:
            voided += len(packs) + int(np.count_nonzero(per_item[start:k]))  # void: before a fresh start
            start, packs = k + 1, []  # everything before the last fresh start is void
        elif is_pack(keys[k]):
            packs.append(k)
        else:
            voided += 1  # a record of another layout: its item's state is not read
    return lineage, start, packs, voided


def _per_item(values: list[bytes]) -> npt.NDArray[np.uint8]:
    """Per-item values (120 bytes, or 88 written before episodes: widened) as n x 120 bytes."""
    size = CHANGELOG_VALUE.itemsize
    if any(len(v) != size for v in values):
        values = [v if len(v) == size else _widen(v) for v in values]
    return np.frombuffer(b"".join(values), np.uint8).reshape(-1, size)


def _text(key: bytes) -> str | None:
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None


def _widen(value: bytes) -> bytes:
    old = np.frombuffer(value, LEGACY_VALUE)
    new = np.zeros(1, CHANGELOG_VALUE)
    new["state"], new["offset"] = join(old["state"]), old["offset"]
    return new.tobytes()
