"""``consume`` serving a model trained with ``peer_group_field = none`` (group field ``""``): its
decisions are the replay's with no peer groups, the state of a category model starts afresh at the
swap, and a restart of the same model restores its state (the lineage names ``""``)."""

from __future__ import annotations

import pytest

from consumer.scoring.state.changelog import LINEAGE_KEY, Lineage
from detection import ChangeDetector, parse_updates, train_detector
from tests.fakes import MemoryChangelog
from tests.unit.consumer.scoring.state.stream import snapshot_docs, stream
from tests.unit.consumer.scoring.state.test_change_loop import LoggingSink
from tests.unit.consumer.scoring.state.test_swaps import (
    CommittedSource,
    Interleaved,
    decisions_by_model,
    replay_from_seed,
    run,
    scores,
)


def test_a_model_without_peer_groups_is_served_and_keeps_its_own_lineage() -> None:
    docs = snapshot_docs()
    by_category = train_detector(parse_updates(docs)[0]).with_version("20261201T000000Z-category")
    alone = train_detector(parse_updates(docs, group_field="")[0], group_field="")
    alone = alone.with_version("20261201T000000Z-nogroups")
    assert isinstance(alone, ChangeDetector) and alone.metadata.peer_groups == {}
    recs = stream(seed=25)
    changelog = MemoryChangelog()
    sink = LoggingSink(changelog)
    loop = run(Interleaved(recs), sink, [(0, by_category), (200, alone)], events=300)
    swapped = decisions_by_model(sink)[alone.version]  # type: ignore[index]
    assert len(swapped) >= 50
    assert {e["features"]["price_vs_peers"] for e in swapped.values()} == {0.0}
    assert scores(swapped) == pytest.approx(replay_from_seed(alone, recs, set(swapped), ""), abs=1e-12)
    assert any("the model by ''" in r.reset for r in loop.state.store.restores)  # type: ignore[union-attr]
    last = [Lineage.decode(v) for k, v in changelog.partitions[0] if k == LINEAGE_KEY][-1]
    assert last is not None and last.group_field == ""
    again = LoggingSink(changelog)  # a restart with the same model: restored, not started afresh
    restarted = run(CommittedSource(recs, sink.commits[-1]), again, [(0, alone)], events=100)
    assert [r.reset for r in restarted.state.store.restores] == ["", ""]  # type: ignore[union-attr]
