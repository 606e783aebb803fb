"""``stockwatch scan`` with a ``default`` model: each inventory document judged as an item's first state.

The ``default`` detector judges an update as a change of its item's history. A scan has no history:
the collection holds one *state* per item (the snapshot ``consume`` seeds its item states from). So a
scan decides each document as ``consume`` decides the first complete update of an item it has never
seen: with no prior state. What that judges:

* the data-quality rules that need no previous state (``negative_stock``, ``negative_level``,
  ``max_zero``, ``min_ge_max``, ``price_nonpositive_with_stock``, ``stock_10x_max``, any such rule
  of the model's table) flag the item with their severity, whatever the model says;
* the model scores the state's level features (stock against the item's max, min against max, price
  against its peer group's prices) with no movement; the change features are 0;
* rules that compare with a previous state (``price_jump_9x``, ``stale_update``, ``duplicate_update``
  …) cannot fire.

Judging each state against itself (the snapshot as a baseline, then the same state as its update)
would judge nothing: every document would be an unchanged update (or, with ``occurred_at``, a
``duplicate_update``). Each document is judged alone: two documents of one item are two judgements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from consumer.retraining.snapshot import MAX_EXAMPLES, DocCounts
from consumer.wire.events import UNVERSIONED, Coordinates, IdBy, build_events
from detection import ChangeDetector, StateTable, parse_updates
from detection.change_features import CHANGE_FEATURE_NAMES

__all__ = ["inventory_fields", "scan_changes"]


def inventory_fields(detector: ChangeDetector) -> tuple[str, ...]:
    """What the scan reads besides the item's numbers (the peer group, as the state's seed does)."""
    return (detector.metadata.group_field, "occurred_at")


def scan_changes(
    detector: ChangeDetector,
    docs: Sequence[Mapping[str, Any]],
    source: str,
    first_row: int,
    counts: DocCounts,
) -> tuple[int, list[dict[str, Any]]]:
    """(items scored, anomaly events) of one chunk of inventory documents (rows ``first_row`` on)."""
    counts.read += len(docs)
    scored, events = 0, list[dict[str, Any]]()
    for rows in _alone(docs, detector.metadata.group_field):
        n, found = _decide(detector, [docs[r] for r in rows], [first_row + r for r in rows], source, counts)
        scored, events = scored + n, events + found
    events.sort(key=lambda e: e["source"]["offset"])
    return scored, events


def _alone(docs: Sequence[Mapping[str, Any]], group: str) -> list[list[int]]:
    """Rows of ``docs`` in passes where no item appears twice (one empty state table per pass)."""
    batch, rejects = parse_updates(list(docs), group_field=group)
    bad = {i for i, _ in rejects}
    rows = [r for r in range(len(docs)) if r not in bad]
    seen: dict[str, int] = {}
    passes: list[list[int]] = [[]]
    for r, item_id in zip(rows, batch.item_ids, strict=True):
        k = seen[item_id] = seen.get(item_id, -1) + 1
        if k == len(passes):
            passes.append([])
        passes[k].append(r)
    passes[0] = sorted(passes[0] + sorted(bad))  # invalid ones are counted by the first pass
    return passes


def _decide(
    detector: ChangeDetector,
    docs: list[Mapping[str, Any]],
    rows: list[int],
    source: str,
    counts: DocCounts,
) -> tuple[int, list[dict[str, Any]]]:
    batch, rejects = parse_updates(docs, group_field=detector.metadata.group_field)
    bad = dict(rejects)
    where = [k for k in range(len(docs)) if k not in bad]  # batch row -> docs index
    decisions, _ = detector.decide_batch(StateTable(), batch)  # no history: every item is new
    invalid = [(k, reason) for k, reason in bad.items()]
    invalid += [(where[i], str(exc)) for i, exc in decisions.rejected.items()]  # a number is missing
    for k, reason in sorted(invalid):
        counts.invalid += 1
        if len(counts.examples) < MAX_EXAMPLES:
            counts.examples.append(f"{docs[k].get('_id', '?')}: {reason}")
    flagged = np.flatnonzero(decisions.is_anomaly)
    new = decisions.new_values

    def item(i: int) -> dict[str, Any]:
        stock, low, high, price = new[i].tolist()
        return {"item_id": batch.item_ids[i], "event_id": batch.event_ids[i], "stock_quantity": stock,
                "min_stock_level": low, "max_stock_level": high, "price": price}  # fmt: skip

    events = build_events(
        decisions, flagged, item_ids=batch.item_ids, event_ids=batch.event_ids,
        sources=[Coordinates(source, 0, rows[k]) for k in where], item=item,
        version=detector.version or UNVERSIONED, threshold=detector.threshold, now=datetime.now(UTC),
        id_by=IdBy.ITEM, feature_names=CHANGE_FEATURE_NAMES,
    )  # fmt: skip
    return len(batch) - len(decisions.rejected), [a for _, _, a in events if a is not None]
