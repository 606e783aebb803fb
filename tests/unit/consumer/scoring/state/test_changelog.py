"""The changelog record format and the restore rule (ignore changes of uncommitted inputs)."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.scoring.state.changelog import (
    CHANGELOG_VALUE,
    changelog_records,
    changelog_topic,
    decode,
    item_records,
)
from consumer.scoring.state.packed import is_pack
from consumer.scoring.state.table import PartitionTable
from detection.item_state import STATE_DTYPE


def recs(*stock: float) -> np.ndarray:
    out = np.zeros(len(stock), STATE_DTYPE)
    out["stock"] = stock
    return out


def test_records_go_to_the_input_partition_packed_and_carry_the_offset() -> None:
    out = changelog_records("cl", 3, ["a", "b"], recs(1.0, 2.0), [7, 9])
    assert [(o.topic, o.partition) for o in out] == [("cl", 3)] and is_pack(out[0].key)
    assert len(out[0].value or b"") == 16 + 2 * (CHANGELOG_VALUE.itemsize + 4) + 2  # header, values, ids
    restored = decode([o.key for o in out], [o.value for o in out], committed=100)
    assert restored.item_ids == ["a", "b"]
    assert restored.records["stock"].tolist() == [1.0, 2.0] and restored.offsets.tolist() == [7, 9]


def test_the_latest_committed_change_of_an_item_wins() -> None:
    log = changelog_records("cl", 0, ["a"], recs(1.0), [5]) + changelog_records(
        "cl", 0, ["a", "b"], recs(2.0, 3.0), [8, 8]
    )
    log += changelog_records("cl", 0, ["a"], recs(4.0), [12])  # its input (offset 12) is not committed
    keys, values = [o.key for o in log], [o.value for o in log]
    assert latest(keys, values, committed=10) == {"a": (2.0, 8), "b": (3.0, 8)}
    assert decode(keys, values, committed=10).ignored == 1
    assert latest(keys, values, committed=13) == {"a": (4.0, 12), "b": (3.0, 8)}
    assert latest(keys, values, committed=0) == {}


def latest(
    keys: list[bytes | None], values: list[bytes | None], *, committed: int
) -> dict[str, tuple[float, int]]:
    """What a restore puts in the table: the last usable record of each item."""
    restored = decode(keys, values, committed=committed)
    table = PartitionTable()
    table.load(restored.item_ids, restored.records, restored.offsets)
    ids = sorted(set(restored.item_ids))
    got, offsets = table.get(table.lookup(ids))
    return {i: (s, o) for i, s, o in zip(ids, got["stock"].tolist(), offsets.tolist(), strict=True)}


def test_values_of_another_layout_and_tombstones_are_ignored() -> None:
    good = item_records("cl", 0, ["a"], recs(1.0), [1])[0]
    restored = decode([b"x", good.key, b"y"], [b"short", good.value, None], committed=5)
    assert restored.item_ids == ["a"] and restored.ignored == 2


def test_a_record_whose_key_is_not_utf8_is_ignored_not_a_crash() -> None:
    good = item_records("cl", 0, ["a", "b"], recs(1.0, 2.0), [1, 2])
    forged = b"\0" * CHANGELOG_VALUE.itemsize  # what anyone with write access to the topic can add
    restored = decode(
        [good[0].key, b"\xff", good[1].key], [good[0].value, forged, good[1].value], committed=5
    )
    assert restored.item_ids == ["a", "b"] and restored.ignored == 1
    assert restored.records["stock"].tolist() == [1.0, 2.0] and restored.offsets.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("template", "expected"),
    [("{group_id}.{input_topic}.state", "g1.inventory.stock-updates.state"), ("x/{group_id}", "x_g1")],
)
def test_topic_name_from_the_template(template: str, expected: str) -> None:
    assert changelog_topic(template, group_id="g1", input_topic="inventory.stock-updates") == expected


def test_values_written_before_episodes_restore_beside_new_ones_with_no_episode_open() -> None:
    from consumer.scoring.state.changelog import LEGACY_VALUE
    from consumer.scoring.state.record import join

    old = np.zeros(2, LEGACY_VALUE)
    old["state"], old["offset"] = recs(1.0, 2.0), [3, 4]
    episode = join(recs(5.0))
    episode["status"], episode["opened_offset"], episode["occurrences"] = 1, 6, 2
    new = changelog_records("cl", 0, ["c"], episode, [6])[0]
    keys = [b"a", b"b", new.key, b"junk"]
    restored = decode(keys, [old[0].tobytes(), old[1].tobytes(), new.value, b"x" * 50], committed=10)
    assert (
        restored.item_ids == ["a", "b", "c"] and restored.ignored == 1 and restored.read == 4
    )  # the junk is ignored
    assert restored.records["stock"].tolist() == [1.0, 2.0, 5.0] and restored.offsets.tolist() == [3, 4, 6]
    assert restored.records["status"].tolist() == [0, 0, 1] and restored.records["occurrences"].tolist() == [
        0,
        0,
        2,
    ]


def test_impossible_states_of_every_layout_are_marked_void_and_counted() -> None:
    from consumer.scoring.state.changelog import LEGACY_VALUE

    states = recs(1.0, 2.0, 3.0, 4.0)
    states["ref_price"] = 1.0
    states["last_time"][0] = np.inf  # in a record written before episodes
    states["usual_drop"][2] = np.nan  # in a packed record
    old = np.zeros(2, LEGACY_VALUE)
    old["state"], old["offset"] = states[:2], [1, 2]
    packed = changelog_records("cl", 0, ["c", "d"], states[2:], [3, 4])[0]
    restored = decode(
        [b"a", b"b", packed.key], [old[0].tobytes(), old[1].tobytes(), packed.value], committed=10
    )
    assert restored.item_ids == ["a", "b", "c", "d"] and restored.ignored == 0
    assert restored.void is not None and restored.void.tolist() == [True, False, True, False]
    assert restored.dropped == 2
    fine = decode([packed.key], [changelog_records("cl", 0, ["d"], states[3:], [4])[0].value], committed=10)
    assert fine.void is None and fine.dropped == 0
