"""The scoring loop's delivery rules with in-memory fakes (pure logic: no broker).

What is checked: offsets are committed only up to batches whose outputs were all acknowledged,
in order; a failed delivery rewinds to the failed batch and it is published again; at shutdown
the settled offsets of partitions still ours are committed without waiting for lost ones.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from consumer.batch import BatchConfig, OutputRecord
from consumer.ports import DeliveryError
from consumer.service import ScoringService
from tests.unit.test_batch import FakeModel, item

Rec = namedtuple("Rec", "topic partition offset timestamp key value headers")
TP = ("in", 0)


class FakeSource:
    """One or more partitions of JSON records; ``poll`` hands out up to ``max_records`` per call."""

    def __init__(self, records: dict[tuple[str, int], list[Rec]]) -> None:
        self.records = records
        self.position = dict.fromkeys(records, 0)
        self.assigned = set(records)
        self.seeks: list[dict[tuple[str, int], int]] = []

    def subscribe(self) -> None: ...

    def poll(self, timeout_ms: int, max_records: int) -> dict[tuple[str, int], list[Rec]]:
        out = {}
        for tp in sorted(self.assigned):
            recs = self.records[tp][self.position[tp] : self.position[tp] + max_records]
            if recs:
                out[tp] = recs
                self.position[tp] += len(recs)
                break
        return out

    def assignment(self) -> set[tuple[str, int]]:
        return set(self.assigned)

    def pause_all(self) -> None: ...
    def resume_all(self) -> None: ...

    def seek(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self.seeks.append(dict(offsets))
        self.position.update(offsets)

    def committed(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        return dict.fromkeys(partitions)

    def lag(self) -> dict[tuple[str, int], int]:
        return {}

    def close(self) -> None: ...


class Acked:
    def __init__(self, error: BaseException | None = None) -> None:
        self._error = error

    def done(self) -> bool:
        return True

    def error(self) -> BaseException | None:
        return self._error

    def wait(self) -> None: ...


class FakeSink:
    """Acknowledges every publish except the ``fail_at``-th (0-based), whose delivery fails."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.published: list[list[OutputRecord]] = []
        self.commits: list[dict[tuple[str, int], int]] = []
        self.acked_up_to: list[int] = []  # per publish: its end offset in TP if acknowledged, else -1

    def publish(self, outputs: Sequence[OutputRecord], offsets: Mapping[Any, int], source: Any) -> Acked:
        failed = len(self.published) == self.fail_at
        self.published.append(list(outputs))
        self.acked_up_to.append(-1 if failed else offsets.get(TP, -1))
        return Acked(DeliveryError("broker said no") if failed else None)

    def commit(self, offsets: Mapping[tuple[str, int], int], source: Any, *, sync: bool) -> None:
        # the rule: a commit never passes an offset whose batch was not acknowledged (yet)
        covered = 0
        for end in sorted(e for e in self.acked_up_to if e >= 0):
            if end - 10 > covered:
                break
            covered = end
        assert offsets.get(TP, 0) <= covered, (offsets, self.acked_up_to)
        self.commits.append(dict(offsets))

    def close(self, timeout_s: float = 10.0) -> None: ...


class FakeWatcher:
    def __init__(self) -> None:
        self.first_check_done = threading.Event()
        self.first_check_done.set()
        self._model: FakeModel | None = FakeModel()

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def take(self) -> FakeModel | None:
        model, self._model = self._model, None
        return model


def records(tp: tuple[str, int], n: int) -> list[Rec]:
    rows = [item(i, stock=50_000 if i % 5 == 0 else 50) for i in range(n)]
    return [Rec(tp[0], tp[1], i, 1_000 + i, None, orjson.dumps(r), []) for i, r in enumerate(rows)]


def service(source: FakeSource, sink: FakeSink) -> ScoringService:
    return ScoringService(
        source=source,
        sink=sink,
        watcher=FakeWatcher(),  # type: ignore[arg-type]
        config=BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq", max_message_bytes=4096),
        max_poll_records=10,
        retry_backoff_s=0.0,
    )


def anomaly_offsets(sink: FakeSink) -> list[int]:
    return [orjson.loads(o.value or b"")["source"]["offset"] for batch in sink.published for o in batch]


def test_a_failed_delivery_rewinds_and_publishes_the_batch_again() -> None:
    source, sink = FakeSource({TP: records(TP, 50)}), FakeSink(fail_at=2)
    stats = service(source, sink).run(max_events=50, timeout=10)
    assert stats.events_in == 50 and stats.delivery_failures == 1
    assert source.seeks == [{TP: 20}]  # the first offset of the failed (third) batch
    # commits (each checked by FakeSink.commit) never move back and end at the last record
    committed = [c[TP] for c in sink.commits]
    assert committed == sorted(committed) and committed[-1] == 50
    # the failed batch was produced twice (duplicates, never losses), all others once
    seen = anomaly_offsets(sink)
    assert sorted(set(seen)) == list(range(0, 50, 5))
    assert [o for o in seen if seen.count(o) > 1] == [20, 25, 20, 25]


def test_shutdown_commits_its_own_partitions_without_waiting_for_lost_ones() -> None:
    other = ("in", 1)
    source, sink = FakeSource({TP: records(TP, 20), other: records(other, 20)}), FakeSink()
    loop = service(source, sink)
    stats = loop.run(max_events=40, timeout=10)
    assert stats.events_in == 40 and sink.commits[-1] == {TP: 20, other: 20}
    # a rebalance gave partition 1 to another member; this member reads more of partition 0
    source.assigned = {TP}
    source.records[TP] += [r._replace(offset=20 + i) for i, r in enumerate(records(TP, 10))]
    loop.watcher._model = FakeModel()  # type: ignore[attr-defined]
    stats = loop.run(max_events=10, timeout=10)
    assert stats.events_in == 10 and stats.stopped_by == "max_events"
    assert sink.commits[-1] == {TP: 30}  # only its own partition, at once (not after 15 s)
