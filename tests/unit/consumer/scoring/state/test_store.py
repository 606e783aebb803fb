"""StateStore: restore on assignment, drop on revocation, apply / acknowledge / roll back batches."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest

from consumer.scoring.change_batch import ChangeContext
from consumer.scoring.state.changelog import changelog_records, item_records
from consumer.scoring.state.packed import PACK_PREFIX
from consumer.scoring.state.store import StagedChanges, StateStore
from consumer.scoring.state.table import ABSENT
from detection.item_state import STATE_DTYPE
from tests.fakes import MemoryChangelog


def recs(*stock: float) -> np.ndarray:
    out = np.zeros(len(stock), STATE_DTYPE)
    out["stock"] = stock
    out["ref_price"] = 1.0  # a state StockWatch writes (a restore drops others)
    return out


def staged(p: int, ids: list[str], stock: list[float], offsets: list[int]) -> StagedChanges:
    return StagedChanges({p: (ids, recs(*stock), np.asarray(offsets, np.int64))})


def stock_of(store: StateStore, p: int, ids: list[str]) -> list[float | None]:
    records, offsets = store.prior([p] * len(ids), ids)
    return [
        None if o == ABSENT else s for s, o in zip(records["stock"].tolist(), offsets.tolist(), strict=True)
    ]


def test_assign_restores_the_partition_and_resume_offset_bounds_what_counts() -> None:
    changelog = MemoryChangelog()
    changelog.append(changelog_records(changelog.topic, 1, ["a", "b"], recs(1.0, 2.0), [3, 4]))
    changelog.append(changelog_records(changelog.topic, 1, ["a"], recs(5.0), [9]))
    store = StateStore(changelog)
    done = store.assign(1, resume_offset=9)  # the change made by input 9 is made again
    assert (done.items, done.read, done.ignored) == (2, 2, 1)  # 2 packed records; a's state of input 9
    assert stock_of(store, 1, ["a", "b", "c"]) == [1.0, 2.0, None]
    assert changelog.reads == [1] and store.owned == {1}


def test_rollback_undoes_unacknowledged_batches_newest_first_and_keeps_acknowledged_ones() -> None:
    store = StateStore(MemoryChangelog())
    store.assign(0, resume_offset=0)
    first = store.apply(staged(0, ["a"], [1.0], [10]))
    store.apply(staged(0, ["a", "b"], [2.0, 3.0], [11, 11]))
    store.apply(staged(0, ["a"], [4.0], [12]))
    store.settled(first)
    assert store.rollback() == 2
    assert stock_of(store, 0, ["a", "b"]) == [1.0, None]
    assert store.rollback() == 0


def test_revoked_partitions_are_dropped_with_their_undo_and_restored_when_they_come_back() -> None:
    changelog = MemoryChangelog()
    ctx = ChangeContext(StateStore(changelog), changelog.topic)
    ctx.restore_for({("in", 0): 0, ("in", 1): 0})
    ctx.store.apply(staged(1, ["x"], [7.0], [0]))
    changelog.append(changelog_records(changelog.topic, 1, ["x"], recs(7.0), [0]))
    ctx.keep_only({("in", 0)})
    assert ctx.store.owned == {0}
    assert ctx.store.rollback() == 1  # nothing to undo in a partition this member no longer owns
    ctx.restore_for({("in", 0): 5, ("in", 1): 1})
    assert changelog.reads == [0, 1, 1]  # partition 0 was owned already; 1 is restored again
    assert stock_of(ctx.store, 1, ["x"]) == [7.0]


def test_a_partition_dropped_by_a_tick_during_a_restore_is_restored_before_its_records_are_decided() -> None:
    ticks: list[int] = []

    def tick() -> None:  # a rebalance seen while partition 1 is restored drops partition 0
        ticks.append(1)
        ctx.keep_only({("in", 1)})

    class TickingChangelog(MemoryChangelog):
        def read(
            self, partition: int, *, tick: object = None
        ) -> tuple[list[bytes | None], list[bytes | None]]:
            if callable(tick):
                tick()
            return super().read(partition)

    ctx = ChangeContext(StateStore(TickingChangelog()), "g.in.state")
    ctx.restore_for({("in", 0): 0, ("in", 1): 0}, tick)
    assert ticks and ctx.store.owned == {0, 1}


def test_a_fresh_start_voids_every_record_before_its_mark_and_a_rewind_writes_the_mark_again() -> None:
    from consumer.scoring.state.changelog import Lineage, lineage_record, reset_record

    changelog = MemoryChangelog()
    changelog.append(changelog_records(changelog.topic, 0, ["a", "b"], recs(1.0, 2.0), [3, 4]))
    changelog.append([lineage_record(changelog.topic, 0, Lineage("category", 5))])
    store = StateStore(changelog)
    store.group_field = "category"
    assert store.assign(0, resume_offset=9, committed=5).reset == ""  # decided up to the commit
    assert stock_of(store, 0, ["a", "b"]) == [1.0, 2.0] and store.take_resets([0]) == set()
    store.revoke([0])
    done = store.assign(0, resume_offset=9, committed=9)  # inputs 5..8 were decided by the seed model
    assert "from offset 5 to 8" in done.reset and stock_of(store, 0, ["a", "b"]) == [None, None]
    assert store.take_resets([1]) == set() and store.take_resets([0]) == {0}  # its next batch marks it
    assert store.take_resets([0]) == set()
    store.apply(StagedChanges({0: (["c"], recs(3.0), np.asarray([9]))}, resets={0}))
    store.rollback()  # that batch is read again: its mark may not have landed
    assert store.take_resets([0]) == {0} and stock_of(store, 0, ["c"]) == [None]
    token = store.apply(StagedChanges({0: (["c"], recs(3.0), np.asarray([9]))}, resets={0}))
    store.settled(token)
    store.rollback()
    assert store.take_resets([0]) == set()  # acknowledged: written
    # in the changelog: a record of the state before (input 9, never committed), then the mark
    changelog.append(changelog_records(changelog.topic, 0, ["d"], recs(7.0), [9]))
    changelog.append([reset_record(changelog.topic, 0)])
    changelog.append(changelog_records(changelog.topic, 0, ["c"], recs(3.0), [10]))
    changelog.append([lineage_record(changelog.topic, 0, Lineage("category", 11))])
    store.revoke([0])
    assert store.assign(0, resume_offset=11, committed=11).reset == ""
    assert stock_of(store, 0, ["a", "b", "d", "c"]) == [None, None, None, 3.0]  # void before the mark


def test_the_seed_deciding_a_partition_drops_its_state_until_it_leaves_the_assignment() -> None:
    store = StateStore(MemoryChangelog())
    store.assign(0, resume_offset=0)
    store.mark_stale([0, 1])
    assert store.owned == set()
    assert "seed model" in store.assign(0, resume_offset=4).reset
    store.keep_stale([0])  # partition 1 went to another member: its lineage decides there
    assert store.assign(1, resume_offset=4).reset == ""


def test_item_states_no_stockwatch_writes_are_dropped_counted_and_logged_without_their_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    changelog = MemoryChangelog()
    forged = recs(1.0, 2.0, 3.0, 4.0, 5.0)
    forged["stock"][0], forged["price"][1], forged["usual_gap"][2] = np.nan, np.inf, -1.0
    forged["left_stock"][3] = forged["last_time"][3] = np.nan  # NaN where StockWatch writes it: kept
    changelog.append(
        changelog_records(changelog.topic, 0, ["a", "b", "c", "d", "e"], recs(*[9.0] * 5), [0] * 5)
    )
    changelog.append(changelog_records(changelog.topic, 0, ["a", "b", "c", "d"], forged[:4], [1] * 4))
    changelog.append(changelog_records(changelog.topic, 0, ["b"], recs(6.0), [2]))  # a later state wins
    store = StateStore(changelog)
    with caplog.at_level(logging.WARNING, logger="consumer.scoring.state.store"):
        done = store.assign(0, resume_offset=10)
    assert (done.items, done.dropped) == (3, 3)
    # a's and c's last states are void: they start unknown, not from their older state
    assert stock_of(store, 0, ["a", "b", "c", "d", "e"]) == [None, 6.0, None, 4.0, 9.0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("3 item states of g.in.state[0]")
    assert "nan" not in warnings[0].lower() and "inf" not in warnings[0].lower()


def test_a_per_item_record_under_a_pack_key_restores_as_that_id_and_is_checked_as_any() -> None:
    changelog = MemoryChangelog()
    key = PACK_PREFIX + b"0123"  # a packed value is never 88 or 120 bytes: this is a per-item record
    good, bad = item_records(changelog.topic, 0, ["x", "y"], recs(1.0, 2.0), [0, 0])
    bad_state = recs(2.0)
    bad_state["stock"] = np.nan
    forged = item_records(changelog.topic, 0, ["z"], bad_state, [0])[0]
    changelog.append([replace(good, key=key), bad, replace(forged, key=key + b"9")])
    store = StateStore(changelog)
    done = store.assign(0, resume_offset=10)
    assert (done.items, done.dropped) == (2, 1)
    assert stock_of(store, 0, [key.decode(), "y", key.decode() + "9"]) == [1.0, 2.0, None]
