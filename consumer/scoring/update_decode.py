"""A ``default``-detector batch's updates: scanned from the record bytes when plain, else decoded.

The usual batch (every value a flat JSON object of plain values) is scanned straight into its
columns (:func:`detection.update_scan.scan_updates`): no dict is built per record. Its objects are
decoded only where an event needs one (its item's attributes: ~5 % of rows, :class:`LazyObjects`).
Any other batch is decoded record by record and parsed as before; both give the same updates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, overload

import orjson

from consumer.ports import SourceRecord
from consumer.scoring.batch import BatchConfig, Failure, decode_records, plain_values
from detection import UpdateBatch, parse_updates
from detection.update_scan import scan_updates

__all__ = ["MAX_SCAN_BYTES", "LazyObjects", "decode_updates"]

MAX_SCAN_BYTES: Final = 1 << 23  # a batch's values are joined for the scan: beyond this, decoded one by one


class LazyObjects(Sequence[dict[str, Any]]):
    """The JSON object of each record, decoded when first asked for (the scan vouched for it)."""

    __slots__ = ("_done", "_records")

    def __init__(self, records: Sequence[SourceRecord]) -> None:
        self._records = records
        self._done: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._records)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | Sequence[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[k] for k in range(len(self))[i]]
        if i < 0:
            i += len(self._records)  # one cache key per record
        obj = self._done.get(i)
        if obj is None:
            obj = self._done[i] = orjson.loads(self._records[i].value)  # type: ignore[arg-type]
        return obj


def decode_updates(
    records: Sequence[SourceRecord], config: BatchConfig, group_field: str
) -> tuple[
    Sequence[dict[str, Any]], Sequence[SourceRecord], list[Failure], UpdateBatch, list[tuple[int, str]]
]:
    """``(objects, candidates, failures, updates, rejects)`` as ``decode_records`` then
    ``parse_updates`` give them."""
    values = plain_values(records, config.max_message_bytes)
    if values is not None and sum(map(len, values)) <= MAX_SCAN_BYTES:
        updates = scan_updates(values, group_field)
        if updates is not None:
            return LazyObjects(records), records, [], updates, []
    objs, candidates, failures = decode_records(records, config)
    updates, rejects = parse_updates(objs, group_field=group_field)
    return objs, candidates, failures, updates, rejects
