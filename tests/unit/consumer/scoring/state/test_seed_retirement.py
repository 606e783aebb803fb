"""Seed retirement (issue 11): the inventory seed drops an item once its state is durable in the
changelog — never before (a rollback meets the seed again) — repacks when half of it is dead, and
reloads before a partition whose items may start from it again decides."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from consumer.scoring.change_batch import ChangeContext
from consumer.scoring.metrics import ConsumerMetrics
from consumer.scoring.state.cache import ChangelogCache
from consumer.scoring.state.changelog import changelog_records
from consumer.scoring.state.item_ids import id_hashes
from consumer.scoring.state.seeds import SEED_DTYPE, BackgroundSeeds, LookupSeeds, SnapshotSeeds
from consumer.scoring.state.store import StagedChanges, StateStore
from consumer.scoring.state.table import PartitionTable
from consumer.scoring.state_flush import StateFlush
from detection import ChangeDetector, parse_updates, train_detector
from detection.item_state import STATE_DTYPE
from tests.fakes import FakeSink, FakeSource, MemoryChangelog
from tests.unit.consumer.scoring.state.stream import snapshot_docs

IDS = [f"sku-{i}" for i in range(0, 40, 2)]  # partition 0's inventory items of the stream


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs())[0])


def recs(n: int) -> np.ndarray:
    out = np.zeros(n, STATE_DTYPE)
    out["stock"] = np.arange(n)
    out["ref_price"] = 1.0  # a state StockWatch writes (a restore drops others)
    return out


def seeded(seeds: Any, ids: list[str]) -> dict[str, float]:
    batch = seeds.seed(ids)
    return dict(zip(batch.item_ids, batch.stock.tolist(), strict=True))


def snapshot_stock(ids: list[str]) -> dict[str, float]:
    docs = {d["item_id"]: float(d["stock_quantity"]) for d in snapshot_docs()}
    return {i: docs[i] for i in ids}


class Loads:
    """The inventory as BackgroundSeeds reads it, counting the reads."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _group: str) -> list[dict[str, Any]]:
        self.count += 1
        return snapshot_docs()


def at_least_once(sink: FakeSink) -> tuple[ChangeContext, BackgroundSeeds, StateFlush, Loads]:
    store = StateStore(MemoryChangelog())
    store.cache = ChangelogCache(store.changelog.topic)
    loads = Loads()
    seeds = BackgroundSeeds(loads)
    ctx = ChangeContext(store, store.changelog.topic, seeds)
    seeds.prepare("category", lambda: None)
    store.assign(0, resume_offset=0)
    return ctx, seeds, StateFlush(store, sink, FakeSource({}), ConsumerMetrics()), loads


def acknowledge(ctx: ChangeContext, ids: list[str], offset: int) -> None:
    """A batch applied and acknowledged (its changes wait in the cache for the next flush)."""
    changes = StagedChanges({0: (ids, recs(len(ids)), np.full(len(ids), offset, np.int64))})
    ctx.store.settled(ctx.store.apply(changes))
    assert ctx.store.cache is not None
    ctx.store.cache.add(changes)


def test_a_dropped_row_is_missed_and_a_repack_keeps_every_live_row_with_its_exact_values() -> None:
    rng = np.random.default_rng(3)
    ids = [f"item-{k}-é" for k in range(3000)]
    rows = np.zeros(len(ids), SEED_DTYPE)
    for name in SEED_DTYPE.names or ():
        rows[name] = rng.integers(0, 10**6, len(ids))
    table = PartitionTable(dtype=SEED_DTYPE, keep_ids=False)
    table.put(ids, rows, np.full(len(ids), -1))
    table.compact()
    before = table.nbytes
    gone = ids[::3] + ids[1::3]
    assert table.drop(*id_hashes(gone + gone[:10])) == len(gone)  # an id given twice counts once
    assert (table.lookup(gone) == -1).all() and len(table) == len(ids) - len(gone)
    table.repack()
    assert table.nbytes < before / 2 and table.rows == len(table)
    live = ids[2::3]
    at = table.lookup(live)
    assert (at >= 0).all() and (table.lookup(gone) == -1).all()
    got, offsets = table.get(at)
    assert got.tobytes() == rows[2::3].tobytes() and (offsets == -1).all()
    table.put(["new"], rows[:1], [-1])  # still a table: an insert after a repack finds its row
    assert table.get(table.lookup(["new"]))[0].tobytes() == rows[:1].tobytes()


def test_a_retiring_snapshot_seeds_no_retired_item_and_shrinks_when_half_is_dead() -> None:
    plain, seeds = SnapshotSeeds(snapshot_docs()), SnapshotSeeds(snapshot_docs(), retiring=True)
    every = [d["item_id"] for d in snapshot_docs()]
    plain.retire(id_hashes(every))  # not retiring (cannot reload): kept
    assert len(plain) == len(every)
    full = seeds.nbytes
    gone, kept = every[: len(every) // 2 + 1], every[len(every) // 2 + 1 :]
    seeds.retire(id_hashes(gone))
    assert seeded(seeds, gone) == {} and seeds.retired == len(gone)
    assert seeds.nbytes < full * 0.6  # repacked: the memory is reclaimed
    assert seeded(seeds, kept) == seeded(plain, kept) and len(seeded(seeds, kept)) == len(kept)
    LookupSeeds(None).retire(id_hashes(gone))  # type: ignore[arg-type]  # keeps nothing: a no-op


def test_items_are_retired_once_their_flush_is_acknowledged_and_a_rollback_before_meets_the_seed() -> None:
    ctx, seeds, flush, _ = at_least_once(FakeSink(fail_at=0))  # the first flush is not acknowledged
    snapshot = snapshot_stock(IDS)
    changes = StagedChanges({0: (IDS, recs(len(IDS)), np.full(len(IDS), 5, np.int64))})
    ctx.store.apply(changes)
    ctx.store.rollback()  # delivery failed: the batch is read again, its items meet the seed again
    assert seeded(seeds, IDS) == snapshot
    acknowledge(ctx, IDS[:10], 5)
    assert seeded(seeds, IDS) == snapshot  # acknowledged, but not in the changelog yet
    flush.start()
    assert flush.done(block=True) is False and seeded(seeds, IDS) == snapshot  # refused: given back
    flush.start()
    assert flush.done(block=True) is True
    assert seeded(seeds, IDS) == {i: snapshot[i] for i in IDS[10:]} and seeds.retired == 10


def test_a_fresh_start_after_retirement_reloads_the_seed_before_the_partition_decides(
    detector: ChangeDetector,
) -> None:
    ctx, seeds, flush, loads = at_least_once(FakeSink())
    acknowledge(ctx, IDS, 5)
    flush.start()
    assert flush.done(block=True) and seeded(seeds, IDS) == {}
    ctx.store.mark_stale([0])  # the seed model decided some of its updates: its items start afresh
    ctx.prepare(detector, {("in", 0): 10}, lambda: None)
    assert ctx.store.restores[-1].reset and loads.count == 2
    assert seeded(seeds, IDS) == snapshot_stock(IDS)  # an unknown item starts from its snapshot again


def test_a_restore_retires_the_restored_items_and_one_that_leaves_states_out_reloads_the_seed(
    detector: ChangeDetector,
) -> None:
    changelog = MemoryChangelog()
    changelog.append(changelog_records(changelog.topic, 0, IDS[:8], recs(8), [3] * 8))
    changelog.append(changelog_records(changelog.topic, 0, IDS[8:10], recs(2), [9, 9]))
    loads = Loads()
    seeds = BackgroundSeeds(loads)
    ctx = ChangeContext(StateStore(changelog), changelog.topic, seeds)
    ctx.prepare(detector, {("in", 0): 20}, lambda: None)  # a restarted member: every record committed
    assert loads.count == 1 and seeds.retired == 10
    assert seeded(seeds, IDS) == snapshot_stock(IDS[10:])
    ctx.store.revoke([0])
    ctx.prepare(detector, {("in", 0): 9}, lambda: None)  # the changes of input 9 are made again
    assert loads.count == 2  # they may meet the seed again: it is reloaded, then the restored retired
    assert seeded(seeds, IDS) == snapshot_stock(IDS[8:]) and seeds.retired == 8
    ctx.store.revoke([0])
    ctx.prepare(detector, {("in", 0): 20}, lambda: None)
    assert loads.count == 2  # a restore that leaves nothing out keeps the seed
