"""The per-item state of `stockwatch consume` (the ``default`` detector's item histories).

* :mod:`.table` — :class:`PartitionTable`: one partition's records in numpy arrays (~112 B per item);
* :mod:`.changelog` — the changelog's topic name, record formats and restore decoding;
* :mod:`.packed` — packed records (many item states per Kafka record);
* :mod:`.rolling`, :mod:`.writes` — the rolling rewrite and truncation that bound the log;
* :mod:`.store` — :class:`StateStore`: tables of the owned partitions (assign / revoke / table),
  a batch's changes applied on publish and undone on a rewind;
* :mod:`.seeds` — where unknown items start: the inventory snapshot, loaded once or looked up.

See docs/consume.md § Per-item state.
"""

from __future__ import annotations

from consumer.scoring.state.changelog import changelog_records, changelog_topic
from consumer.scoring.state.seeds import BackgroundSeeds, LookupSeeds, Seeds, SnapshotSeeds
from consumer.scoring.state.store import StagedChanges, StateStore
from consumer.scoring.state.table import PartitionTable

__all__ = [
    "BackgroundSeeds",
    "LookupSeeds",
    "PartitionTable",
    "Seeds",
    "SnapshotSeeds",
    "StagedChanges",
    "StateStore",
    "changelog_records",
    "changelog_topic",
]
