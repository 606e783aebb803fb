"""Per-item history in fixed-width records: 80 bytes per item, packable for a changelog.

The consumer keeps one record per item it owns (up to ~1M per process), so the state is a numpy
structured dtype, not Python objects. :data:`STATE_DTYPE` (packed, little-endian)::

    stock, min, max, price      f8  the last ACCEPTED state (a flagged update never lands here)
    ref_price                   f4  slow EWMA of the price (the item's regular price)
    usual_drop, usual_rise      f4  EWMA of the size of decreases / receipts (rises but returns)
    usual_level                 f4  EWMA of the stock level
    usual_gap                   f4  EWMA of seconds between updates (0 = unknown)
    last_time                   f8  latest occurred_at seen, epoch seconds (NaN = never given)
    group                       u4  crc32 of the peer-group value (category, ...), 0 = unknown
    n_updates                   u4  accepted updates since the baseline; bit 31 (:data:`PROVISIONAL`)
                                    set = the baseline is provisional (a new item's first state was
                                    flagged: the next state that looks right without it replaces it);
                                    bit 30 (:data:`JUMP_RUN`) set = ``flag_run`` counts level jumps
                                    (rules with ``rebase``), kept by updates that carry none of their numbers;
                                    bit 29 (:data:`REPEATED`) set = the item's last accepted full state
                                    (all four numbers) repeated its state: its feed re-sends full states
                                    (nightly syncs) that confirm its deltas; bit 28 (:data:`DOUBTED`)
                                    set = a strong hint came with the last accepted change of stock;
                                    bit 27 (:data:`LAST_FULL`) set = the last accepted update carried
                                    all four numbers
    n_flagged                   u2  flagged updates in total (saturates at 65,535)
    flag_run                    u2  consecutive flagged updates (reset by an accepted one)
    left_stock                  f8  the stock before the last accepted change of stock (NaN = none):
                                    an update restoring it is a revert (a replay or a duplicate)

:class:`ItemState` is a one-item view with ``pack()``/``unpack()``; :class:`StateTable` holds many
(item id -> row index plus one growable array) and is what the detector reads in batches.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import repeat
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "JUMP_RUN",
    "PROVISIONAL",
    "REPEATED",
    "STATE_DTYPE",
    "STATE_SIZE",
    "ItemState",
    "StateTable",
    "group_code",
    "is_provisional",
]

STATE_DTYPE: Final = np.dtype(
    [
        ("stock", "<f8"), ("min", "<f8"), ("max", "<f8"), ("price", "<f8"),
        ("ref_price", "<f4"), ("usual_drop", "<f4"), ("usual_rise", "<f4"), ("usual_level", "<f4"),
        ("usual_gap", "<f4"), ("last_time", "<f8"), ("group", "<u4"), ("n_updates", "<u4"),
        ("n_flagged", "<u2"), ("flag_run", "<u2"), ("left_stock", "<f8")
    ]
)  # fmt: skip
STATE_SIZE: Final = STATE_DTYPE.itemsize
if STATE_SIZE != 80:  # pragma: no cover - a layout change must be deliberate (changelogs hold it)
    raise AssertionError(f"STATE_DTYPE is {STATE_SIZE} bytes, expected 80")

StateRows = npt.NDArray[np.void]
PROVISIONAL: Final = 1 << 31
"""Flag bit of ``n_updates`` (no item counts 2**31 updates, so records written before it read unflagged)."""
JUMP_RUN: Final = 1 << 30
"""Flag bit of ``n_updates``: the flag run is one of level jumps (records written before read 0)."""
REPEATED: Final = 1 << 29
"""Flag bit of ``n_updates``: the last accepted full state repeated the item's state (records written before read 0)."""
DOUBTED: Final = 1 << 28
"""Flag bit of ``n_updates``: a hint of at least ``rules.DOUBT_FROM`` fired on the update that made the
item's last accepted change of stock, so the next contradicting report rolls it back (records written
before read 0)."""
LAST_FULL: Final = 1 << 27
"""Flag bit of ``n_updates``: the item's last accepted update carried all four numbers (a redelivery
carries the fields of the message it repeats; records written before read 0)."""
COUNT_MASK: Final = LAST_FULL - 1


def is_provisional(rows: StateRows) -> npt.NDArray[np.bool_]:
    """Per record: is its baseline a new item's flagged first state (:data:`PROVISIONAL`)?"""
    flagged: npt.NDArray[np.bool_] = (rows["n_updates"] & np.uint32(PROVISIONAL)) != 0
    return flagged


WORDS: Final = STATE_SIZE // 8  # a record as ten uint64 words: numpy copies those far faster


def words(rows: StateRows) -> npt.NDArray[np.uint64]:
    """A contiguous array of records seen as an (n, 10) uint64 matrix (no copy)."""
    return np.ascontiguousarray(rows).view(np.uint64).reshape(-1, WORDS)


def group_code(value: object) -> int:
    """Stable 32-bit code of a peer-group value (crc32 of its text); 0 for none/empty."""
    if value is None or value == "":
        return 0
    return zlib.crc32(str(value).encode()) or 1


@dataclass(frozen=True, slots=True)
class ItemState:
    """One item's history (the fields of :data:`STATE_DTYPE`), packed to 80 bytes."""

    stock: float
    min: float
    max: float
    price: float
    ref_price: float
    usual_drop: float
    usual_rise: float
    usual_level: float
    usual_gap: float = 0.0
    last_time: float = float("nan")
    group: int = 0
    n_updates: int = 0
    n_flagged: int = 0
    flag_run: int = 0
    left_stock: float = float("nan")

    def pack(self) -> bytes:
        """The 80-byte little-endian record (what a changelog stores)."""
        row = np.zeros(1, STATE_DTYPE)
        for name, value in asdict(self).items():
            row[name] = value
        return row.tobytes()

    @classmethod
    def unpack(cls, data: bytes) -> ItemState:
        """Inverse of :meth:`pack`; raises ``ValueError`` for a record of the wrong size."""
        if len(data) != STATE_SIZE:
            raise ValueError(f"an item state is {STATE_SIZE} bytes, got {len(data)}")
        return cls.from_row(np.frombuffer(data, STATE_DTYPE)[0])

    @classmethod
    def from_row(cls, row: np.void) -> ItemState:
        values = {name: row[name].item() for name in STATE_DTYPE.names or ()}
        return cls(**values)


class StateTable:
    """Item id -> state record, for the items one consumer owns (one table per partition is fine).

    Rows are never moved or deleted while in use, so a row index stays valid; ``gather`` and
    ``scatter`` read and write many rows at once. About 80 bytes per item plus the dict entry.
    """

    __slots__ = ("_index", "_n", "_rows")

    def __init__(self, capacity: int = 1024) -> None:
        self._index: dict[str, int] = {}
        self._rows: StateRows = np.zeros(max(1, capacity), STATE_DTYPE)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def lookup(self, item_ids: Sequence[str]) -> npt.NDArray[np.intp]:
        """Row index of each id, -1 for unknown ids."""
        return np.fromiter(map(self._index.get, item_ids, repeat(-1)), dtype=np.intp, count=len(item_ids))

    def gather(self, rows: npt.NDArray[np.intp], *, lead: int = 0) -> StateRows:
        """A copy of the given rows (indices must be valid), after ``lead`` zeroed records."""
        out = np.zeros((lead + rows.shape[0], WORDS), np.uint64)
        np.take(words(self._rows), rows, axis=0, out=out[lead:])
        return out.reshape(-1).view(STATE_DTYPE)

    def write_rows(self, rows: npt.NDArray[np.intp], records: StateRows) -> None:
        """Overwrite existing rows (from :meth:`lookup`: rows never move) with ``records``."""
        words(self._rows)[rows] = words(records)

    def scatter(self, item_ids: Sequence[str], records: StateRows) -> None:
        """Write ``records`` for ``item_ids`` (new ids are added)."""
        rows = self.lookup(item_ids)
        missing = np.flatnonzero(rows < 0)
        if missing.size:
            rows[missing] = self._append([item_ids[int(i)] for i in missing])
        self._rows[rows] = records

    def _append(self, item_ids: list[str]) -> npt.NDArray[np.intp]:
        need = self._n + len(item_ids)
        if need > self._rows.shape[0]:
            grown = np.zeros(max(need, 2 * self._rows.shape[0]), STATE_DTYPE)
            grown[: self._n] = self._rows[: self._n]
            self._rows = grown
        start = self._n
        for k, item_id in enumerate(item_ids):
            if item_id in self._index:
                raise ValueError(f"duplicate item id in one scatter: {item_id!r}")
            self._index[item_id] = start + k
        self._n = need
        return np.arange(start, need, dtype=np.intp)

    def get(self, item_id: str) -> ItemState | None:
        row = self._index.get(item_id)
        return None if row is None else ItemState.from_row(self._rows[row])

    def put(self, item_id: str, state: ItemState) -> None:
        self.put_packed(item_id, state.pack())

    def pack(self, item_id: str) -> bytes | None:
        """The item's 80-byte record, or None for an unknown item."""
        row = self._index.get(item_id)
        return None if row is None else self._rows[row : row + 1].tobytes()

    def put_packed(self, item_id: str, data: bytes) -> None:
        """Restore one record (e.g. from a changelog); raises ``ValueError`` for a wrong size."""
        if len(data) != STATE_SIZE:
            raise ValueError(f"an item state is {STATE_SIZE} bytes, got {len(data)}")
        self.scatter([item_id], np.frombuffer(data, STATE_DTYPE))

    def items_packed(self, item_ids: Iterable[str] | None = None) -> Iterator[tuple[str, bytes]]:
        """(id, packed record) of the given ids (default: all), for a changelog or a snapshot."""
        for item_id in self._index if item_ids is None else item_ids:
            data = self.pack(item_id)
            if data is not None:
                yield item_id, data
