"""Which path decides a batch: the seed model's (:mod:`.batch`) or the change detector's with the
per-item state (:mod:`.change_batch`), chosen by the model's type, batch by batch.

Swaps happen between batches (:class:`~consumer.scoring.model_gate.ModelGate`); the state is used
by the change path only. A partition the seed model decided is marked stale (its state no longer
follows its updates), so a later change detector starts it afresh from the inventory seed; every
change batch ends with one lineage record per partition in the changelog (group field, last
decided input offset), so a restore in another process can tell the same, and a batch that starts
a partition afresh begins with its fresh-start mark (:mod:`.state.store`, :mod:`.state.changelog`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from consumer.ports import SourceRecord, TopicPart
from consumer.scoring.batch import BatchConfig, BatchResult, ScoringModel, process_batch
from consumer.scoring.change_batch import ChangeContext, Committed, process_change_batch
from consumer.scoring.state.changelog import lineage_record, reset_record
from detection import ChangeDetector

__all__ = ["ServedModel", "before_poll", "decide"]

ServedModel = ScoringModel | ChangeDetector


def before_poll(model: ServedModel, state: ChangeContext | None) -> None:
    """A change detector's background loads start before its first poll, not inside its first batch
    (the suppressions' first load is a Mongo connection and a query: ~70-300 ms)."""
    if state is not None and state.episodes is not None and isinstance(model, ChangeDetector):
        state.episodes.begin()


def decide(
    records: Sequence[SourceRecord],
    first: dict[TopicPart, int],
    model: ServedModel,
    *,
    config: BatchConfig,
    state: ChangeContext | None,
    committed: Committed,
    tick: Callable[[], None],
    after: Mapping[TopicPart, int] | None = None,
) -> BatchResult:
    """Decide one poll batch (``first``: the batch's first offset per partition; ``after``: the
    offset after its last, when known)."""
    now = datetime.now(UTC)
    if not isinstance(model, ChangeDetector):
        if state is not None:
            state.serving_seed(model.version)
            state.store.mark_stale(p for _, p in first)
        return process_batch(list(records), model, config, now=now)
    if state is None:
        raise RuntimeError("a `default` detector needs the per-item state (build_service wires it)")
    state.prepare(model, first, tick, committed)
    result = process_change_batch(records, model, state, config, now=now)
    ends: dict[int, int] = {}
    if after is not None:
        ends = {p: a for (_, p), a in after.items()}
    else:
        for r in records:
            ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    topic = state.changelog_topic
    resets = state.store.take_resets(ends)
    if result.state is not None:
        result.state.resets = resets
    marks = [reset_record(topic, p) for p in sorted(resets)]  # before the batch's records of p
    state.store.after.update(ends)  # an at-least-once flush repeats the lineage after its records
    lineage = [lineage_record(topic, p, state.store.lineage(a)) for p, a in sorted(ends.items())]
    result.outputs = marks + result.outputs + lineage
    return result
