"""Item ids as one buffer: their UTF-8 bytes end to end and each one's length.

That is how a packed changelog record holds them (:mod:`.packed`) and how a table keeps them
(:mod:`.table`), so a flush hands a table's ids to a record with a few numpy operations instead of
one ``bytes`` object per id, split from one buffer and joined again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["EncodedIds", "IdBlob"]


@dataclass(frozen=True, slots=True, eq=False)
class IdBlob:
    """``len(lengths)`` ids: id ``k`` is ``data[sum(lengths[:k]) : sum(lengths[:k + 1])]``."""

    data: npt.NDArray[np.uint8]
    lengths: npt.NDArray[np.int64]

    @classmethod
    def encode(cls, item_ids: Sequence[str], errors: str = "strict") -> IdBlob:
        """The UTF-8 of ``item_ids`` (as ``str.encode(errors=errors)`` each, errors included)."""
        if isinstance(item_ids, EncodedIds):  # encoded already (strict UTF-8: the same under any errors)
            return item_ids.blob
        text = "".join(item_ids)
        data = text.encode("utf-8", errors)
        n = len(item_ids)
        if len(data) == len(text):  # ASCII (the usual ids): one byte per character
            lengths = np.fromiter(map(len, item_ids), np.int64, count=n)
        else:
            lengths = np.fromiter((len(i.encode("utf-8", errors)) for i in item_ids), np.int64, count=n)
        return cls(np.frombuffer(data, np.uint8), lengths)

    @classmethod
    def of(cls, item_ids: Sequence[bytes]) -> IdBlob:
        """Ids already encoded."""
        lengths = np.fromiter(map(len, item_ids), np.int64, count=len(item_ids))
        return cls(np.frombuffer(b"".join(item_ids), np.uint8), lengths)

    def __len__(self) -> int:
        return int(self.lengths.size)

    def __add__(self, other: IdBlob) -> IdBlob:
        return IdBlob(np.concatenate([self.data, other.data]), np.concatenate([self.lengths, other.lengths]))

    def compress(self, keep: npt.NDArray[np.bool_]) -> IdBlob:
        """The ids where ``keep`` is True, in order."""
        return IdBlob(self.data[np.repeat(keep, self.lengths)], self.lengths[keep])

    def tolist(self) -> list[bytes]:
        """One ``bytes`` per id (for tests and logs: the flush never needs them)."""
        ends = np.cumsum(self.lengths)
        raw = self.data.tobytes()
        return list(map(raw.__getitem__, map(slice, (ends - self.lengths).tolist(), ends.tolist())))


class EncodedIds(list[str]):
    """Ids with their UTF-8 (strict) at hand: :meth:`IdBlob.encode` gives it instead of encoding
    them again (the changelog cache's merged ids, from their table; never changed once made)."""

    __slots__ = ("blob",)

    def __init__(self, ids: Iterable[str], blob: IdBlob) -> None:
        super().__init__(ids)
        self.blob = blob
