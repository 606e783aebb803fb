"""The scoring loop's delivery rules with in-memory fakes (pure logic: no broker).

What is checked: offsets are committed only up to batches whose outputs were all acknowledged,
in order; a failed delivery rewinds to the failed batch and it is published again; at shutdown
the settled offsets of partitions still ours are committed without waiting for lost ones.
"""

from __future__ import annotations

import orjson

from consumer.ports import UnreadBatch
from consumer.scoring.batch import BatchConfig
from consumer.scoring.health import HealthState
from consumer.scoring.loop import ScoringService
from consumer.scoring.metrics import ConsumerMetrics
from consumer.scoring.model_gate import ModelGate
from tests.fakes import TP, FakeModel, FakeSink, FakeSource, FakeWatcher, Rec, item


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


def test_a_failed_delivery_of_an_unread_batch_rewinds_to_its_first_offset() -> None:
    # rewound to its last offset, the batch is read again from there and its dead letter would name
    # only that offset: the records before it in the batch would be skipped without a trace
    unread = UnreadBatch(TP[0], TP[1], 4, 1, "unreadable_record", "in[0] at offsets 1..4: skipped unread")
    source, sink = FakeSource({TP: [unread]}), FakeSink(fail_at=0)
    stats = service(source, sink).run(max_events=1, timeout=3)
    assert stats.delivery_failures == 1
    assert source.seeks[0] == {TP: 1}


def test_waiting_for_a_model_rewinds_an_unread_batch_to_its_first_offset() -> None:
    unread = UnreadBatch(TP[0], TP[1], 4, 1, "unreadable_record", "in[0] at offsets 1..4: skipped unread")
    source = FakeSource({TP: [unread]})
    ModelGate(FakeWatcher(), source, ConsumerMetrics(), HealthState()).wait(100, 10)  # type: ignore[arg-type]
    assert source.seeks == [{TP: 1}]
