"""A batch's ids made at once (``anomaly_ids``, ``episode_ids``) are the one-at-a-time ids, byte for byte."""

from __future__ import annotations

import numpy as np

from consumer.wire.episode_events import episode_id, episode_ids
from consumer.wire.events import Coordinates, anomaly_id, anomaly_ids


def _coordinates(n: int) -> list[tuple[str, int, int, str]]:
    """Topics, partitions, offsets (up to int64) and item ids of every shape, separators included."""
    rng = np.random.default_rng(5)
    topics = ["inventory.stock-updates", "in", "t\x1fx", "lager.bestände"]
    items = ["SKU-1", "", "ΣΚΥ-é", "a\x1fb", "x" * 300, "SKU 7 "]
    offsets = [0, 1, 2**63 - 1, *rng.integers(0, 2**40, 20).tolist()]
    return [
        (topics[k % 4], int(rng.integers(0, 64)), offsets[k % len(offsets)], items[k % 6]) for k in range(n)
    ]


def test_anomaly_ids_are_anomaly_id_of_each_source() -> None:
    rows = _coordinates(200)
    sources = [Coordinates(topic, partition, offset) for topic, partition, offset, _ in rows]
    for version in ("20261125T180102Z-00000000", "unversioned", "v\x1f1"):
        assert anomaly_ids(sources, version) == [
            anomaly_id(s.topic, s.partition, s.offset, version) for s in sources
        ]
    assert anomaly_ids([], "v") == []


def test_episode_ids_are_episode_id_of_each_opening() -> None:
    rows = _coordinates(200)
    assert episode_ids(rows) == [episode_id(*row) for row in rows]
    assert episode_ids([]) == []
