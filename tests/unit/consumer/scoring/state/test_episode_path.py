"""Episodes on the change path: events of a batch, state in the changelog, replay, suppression."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import Message

from consumer.adapters.confluent.records import ConfluentRecord
from consumer.ports import OutputRecord
from consumer.scoring.batch import BatchConfig, BatchResult
from consumer.scoring.change_batch import ChangeContext, process_change_batch
from consumer.scoring.episode_batch import EpisodeContext, EpisodeOutcome, event_times_of, record_stamps
from consumer.scoring.episodes import EPISODE_DTYPE, EpisodePolicy
from consumer.scoring.serving import before_poll
from consumer.scoring.state.seeds import SnapshotSeeds
from consumer.scoring.state.store import StateStore
from consumer.scoring.suppression_cache import SuppressionCache
from consumer.wire.suppressions import suppression_from_feedback
from detection import ChangeDetector, parse_item, parse_updates, train_detector, train_model
from tests.fakes import MemoryChangelog, Rec
from tests.schemas import validate
from tests.unit.consumer.scoring.state.stream import snapshot_docs

CONFIG = BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq")
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
ITEM = "sku-3"  # a TV of the snapshot: tens of units


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs())[0])


def updates(*stocks: float, start: int = 0) -> list[Rec]:
    """Updates of ITEM (partition 1) at offsets start.., one second apart."""
    return [
        Rec("in", 1, start + k, 1_764_590_400_000 + 1000 * (start + k), ITEM.encode(),
            orjson.dumps({"item_id": ITEM, "event_id": f"e{start + k}", "stock_quantity": s}), [])
        for k, s in enumerate(stocks)
    ]  # fmt: skip


def context(changelog: MemoryChangelog, episodes: EpisodeContext | None) -> ChangeContext:
    ctx = ChangeContext(StateStore(changelog), changelog.topic, SnapshotSeeds(snapshot_docs()), episodes)
    ctx.restore_for({("in", 1): 0})
    return ctx


def decide(ctx: ChangeContext, detector: ChangeDetector, recs: Sequence[Rec]) -> BatchResult:
    result = process_change_batch(recs, detector, ctx, CONFIG, now=NOW)
    ctx.published(result)
    ctx.acknowledged(result)
    return result


def events(outputs: Sequence[OutputRecord]) -> list[dict[str, Any]]:
    return [orjson.loads(o.value or b"") for o in outputs if o.topic == "anomalies"]


STREAM = (20.0, -5.0, -6.0, -7.0, 21.0, 22.0, 23.0)  # normal, negative stock x3, normal x3


def test_a_record_timestamp_no_datetime_holds_falls_back_to_now(detector: ChangeDetector) -> None:
    recs = [r._replace(timestamp=2**62) for r in updates(*STREAM)]  # a producer may set any timestamp
    ctx = context(MemoryChangelog(), EpisodeContext(EpisodePolicy(resolve_after=3)))
    got = events(decide(ctx, detector, recs).outputs)
    assert [e["status"] for e in got] == ["open", "resolved"]
    assert got[0]["first_seen"] == NOW.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_record_without_a_timestamp_falls_back_to_now(detector: ChangeDetector) -> None:
    recs = [r._replace(timestamp=None) for r in updates(*STREAM)]
    ctx = context(MemoryChangelog(), EpisodeContext(EpisodePolicy(resolve_after=3)))
    got = events(decide(ctx, detector, recs).outputs)
    assert [e["status"] for e in got] == ["open", "resolved"]
    assert got[0]["first_seen"] == NOW.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_episode_events_carry_the_input_fields_and_trace_headers(detector: ChangeDetector) -> None:
    trace = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    recs = [
        r._replace(
            value=orjson.dumps(orjson.loads(r.value) | {"warehouse_id": "WH-7", "supplier": "acme"}),
            headers=[("traceparent", trace), ("x-other", b"no")],
        )
        for r in updates(*STREAM)
    ]
    ctx = context(MemoryChangelog(), EpisodeContext(EpisodePolicy(resolve_after=3)))
    outputs = [o for o in decide(ctx, detector, recs).outputs if o.topic == "anomalies"]
    assert [orjson.loads(o.value or b"")["status"] for o in outputs] == ["open", "resolved"]
    for o in outputs:
        event = orjson.loads(o.value or b"")
        assert event["item"]["attributes"] == {"warehouse_id": "WH-7", "supplier": "acme"}
        assert list(o.headers or []) == [("traceparent", trace)]
        validate("anomaly-topic-event", event)


def test_one_open_and_one_resolved_per_episode_whatever_the_batches(detector: ChangeDetector) -> None:
    for cuts in ([7], [1, 4, 7], [2, 3, 5, 6, 7]):
        ctx = context(MemoryChangelog(), EpisodeContext(EpisodePolicy(resolve_after=3)))
        got: list[dict[str, Any]] = []
        start = 0
        for end in cuts:
            got += events(decide(ctx, detector, updates(*STREAM[start:end], start=start)).outputs)
            start = end
        assert [e["status"] for e in got] == ["open", "resolved"], cuts
        opened, resolved = got
        validate("anomaly-event", opened)
        validate("resolved-event", resolved)
        for e in got:
            validate("anomaly-topic-event", e)
        assert opened["episode_id"] == resolved["episode_id"]
        assert opened["source"]["offset"] == 1 and resolved["source"]["offset"] == 6
        assert (resolved["occurrences"], resolved["duration_s"]) == (3, 5.0)
        assert resolved["max_severity"] == opened["max_severity"] == opened["severity"]  # no escalation
        assert (
            resolved["first_seen"] == opened["first_seen"]
            and resolved["last_seen"] == "2025-12-01T12:00:03.000Z"
        )


def test_every_update_publishes_the_events_of_today_byte_for_byte(detector: ChangeDetector) -> None:
    plain = decide(context(MemoryChangelog(), None), detector, updates(*STREAM))
    anomalies = [o for o in plain.outputs if o.topic == "anomalies"]
    assert len(anomalies) == 3
    assert all("episode_id" not in e and "status" not in e for e in events(anomalies))


def test_a_restart_restores_the_open_episode_so_a_replay_opens_nothing(detector: ChangeDetector) -> None:
    changelog = MemoryChangelog()
    ctx = context(changelog, EpisodeContext())
    first = decide(ctx, detector, updates(*STREAM[:3]))
    changelog.append(first.outputs)
    [opened] = events(first.outputs)
    restarted = ChangeContext(
        StateStore(changelog), changelog.topic, SnapshotSeeds(snapshot_docs()), EpisodeContext()
    )
    restarted.restore_for({("in", 1): 3})  # offsets 0-2 committed
    rest = events(decide(restarted, detector, updates(*STREAM[3:], start=3)).outputs)
    assert [e["status"] for e in rest] == ["resolved"] and rest[0]["episode_id"] == opened["episode_id"]
    again = ChangeContext(
        StateStore(changelog), changelog.topic, SnapshotSeeds(snapshot_docs()), EpisodeContext()
    )
    again.restore_for({("in", 1): 1})  # only offset 0 committed: the open is decided again, identically
    replayed = events(decide(again, detector, updates(*STREAM[1:3], start=1)).outputs)
    assert [(e["episode_id"], e["anomaly_id"]) for e in replayed] == [
        (opened["episode_id"], opened["anomaly_id"])
    ]


def test_a_suppressed_episode_opens_silently_and_is_counted(detector: ChangeDetector) -> None:
    stored = suppression_from_feedback(
        episode_id="e" * 32, item_id=ITEM, suppress_for_s=3600, when=NOW - timedelta(minutes=1)
    )
    cache = SuppressionCache(lambda: [stored.as_doc()])
    assert cache.refresh(NOW)
    ctx = context(MemoryChangelog(), EpisodeContext(EpisodePolicy(), cache))
    result = decide(ctx, detector, updates(*STREAM))
    assert events(result.outputs) == [] and result.suppressed == 1 and result.n_anomalies == 0
    other = suppression_from_feedback(
        episode_id="f" * 32, item_id=ITEM, suppress_for_s=3600, when=NOW, reason="price"
    )
    cache = SuppressionCache(lambda: [other.as_doc()])
    assert cache.refresh(NOW)
    ctx = context(MemoryChangelog(), EpisodeContext(EpisodePolicy(), cache))
    result = decide(ctx, detector, updates(*STREAM))  # a suppression of another reason: the stock alert opens
    assert [e["status"] for e in events(result.outputs)] == ["open", "resolved"] and result.suppressed == 0


def test_the_suppression_cache_keeps_the_last_set_while_the_store_fails() -> None:
    stored = suppression_from_feedback(episode_id="e" * 32, item_id=ITEM, suppress_for_s=60, when=NOW)
    answers: list[Any] = [[stored.as_doc(), {"_id": "junk"}], ConnectionError("down")]
    seen: list[tuple[int, bool]] = []

    def load() -> list[dict[str, Any]]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    cache = SuppressionCache(load, on_refresh=lambda n, stale: seen.append((n, stale)))
    assert cache.refresh(NOW) and not cache.refresh(NOW)
    assert seen == [(1, False), (1, True)] and cache.stale
    assert cache.matches(ITEM, ["stock is negative"], NOW) is not None
    assert cache.matches(ITEM, ["stock is negative"], NOW + timedelta(minutes=2)) is None  # expired


def test_a_seed_model_under_alert_mode_episodes_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    ctx = context(MemoryChangelog(), EpisodeContext())
    with caplog.at_level("WARNING"):
        ctx.serving_seed("v1")
        ctx.serving_seed("v1")
    said = [r.getMessage() for r in caplog.records if "seed model" in r.getMessage()]
    assert len(said) == 1 and "one event per anomalous update" in said[0]
    caplog.clear()
    with caplog.at_level("WARNING"):
        context(MemoryChangelog(), None).serving_seed("v1")  # every-update: nothing to say
    assert not [r for r in caplog.records if "seed model" in r.getMessage()]


def test_the_first_batch_waits_for_the_first_load_of_the_suppressions_once() -> None:
    stored = suppression_from_feedback(
        episode_id="e" * 32, item_id=ITEM, suppress_for_s=3600, when=datetime.now(UTC)
    )  # the refresh keeps what is active by the clock
    ticks: list[int] = []
    cache = SuppressionCache(lambda: [stored.as_doc()], refresh_s=60)
    episodes = EpisodeContext(EpisodePolicy(), cache)
    episodes.start(lambda: ticks.append(1))
    assert cache.attempted.is_set() and cache.matches(ITEM, [], datetime.now(UTC) + timedelta(minutes=1))
    assert not cache.start()  # the refresh thread runs once
    cache.stop()
    failing = SuppressionCache(lambda: (_ for _ in ()).throw(ConnectionError("down")), refresh_s=60)
    assert failing.start() and failing.wait_first(10) and failing.stale and failing.active == 0
    failing.stop()


def test_a_change_detector_starts_loading_the_suppressions_before_its_first_poll(
    detector: ChangeDetector,
) -> None:
    # the first load (a Mongo connection and a query) ran inside the first batch, delaying it
    loads: list[int] = []
    seed_cache = SuppressionCache(lambda: loads.append(0) or [], refresh_s=60)
    before_poll(
        train_model([parse_item(d) for d in snapshot_docs()]),
        context(MemoryChangelog(), EpisodeContext(EpisodePolicy(), seed_cache)),
    )
    assert not seed_cache.attempted.wait(0.2)  # a seed model has no episodes: nothing is read for it
    cache = SuppressionCache(lambda: loads.append(1) or [], refresh_s=60)
    ctx = context(MemoryChangelog(), EpisodeContext(EpisodePolicy(), cache))
    before_poll(detector, ctx)
    assert cache.attempted.wait(10) and loads == [1]  # before any batch
    before_poll(detector, ctx)
    assert not cache.start()  # still the one refresh thread
    assert ctx.episodes is not None
    ctx.episodes.stop()  # the service's shutdown
    assert cache.start() and cache.wait_first(10)  # a service run again refreshes again
    cache.stop()


@pytest.mark.parametrize(
    "stamps",
    [
        [1_764_590_400_123, 0, -1],
        [1_764_590_400_123, None, 7],
        [None],
        [],
        [2**53 + 1, 2**63 - 1],
        [2**63, 5],
    ],
)
def test_record_stamps_are_each_timestamp_as_a_float_and_nan_for_none(stamps: list[int | None]) -> None:
    got = record_stamps([SimpleNamespace(timestamp=s) for s in stamps])  # type: ignore[misc]
    expect = np.array([np.nan if s is None else float(s) for s in stamps], np.float64)
    assert got.dtype == np.float64 and got.tobytes() == expect.tobytes()


@pytest.mark.parametrize("stamps", [[1_764_590_400_123, None, 7], [None], [2**53 + 1, 2**63 - 1], [1, 2, 3]])
def test_librdkafka_records_give_the_same_stamps_read_at_once(stamps: list[int | None]) -> None:
    messages = [
        Message(topic="in", partition=0, offset=i, value=b"{}", timestamp=(0, 0) if s is None else (1, s))
        for i, s in enumerate(stamps)
    ]
    records = [ConfluentRecord(m) for m in messages]
    assert ConfluentRecord.timestamps_of(records) == [r.timestamp for r in records] == stamps
    got = record_stamps(records)
    expect = np.array([np.nan if s is None else float(s) for s in stamps], np.float64)
    assert got.tobytes() == expect.tobytes()


class _Unread:
    """A record whose timestamp must not be read (a row the episodes do not need)."""

    topic, partition, offset = "in", 0, 0

    @property
    def timestamp(self) -> int:
        raise AssertionError("read the timestamp of a row the episodes do not need")


@pytest.mark.parametrize("given", [False, True])
def test_event_times_read_only_the_rows_asked_for(given: bool) -> None:
    now = NOW.timestamp()
    occurred = np.array([np.nan, 1_700_000_000.5, np.nan, np.nan, np.nan, np.nan])
    stamps = [1_764_590_400_123, 5, None, 2**62, 1_764_590_401_000, 9]
    need = np.array([0, 1, 2, 3, 4], np.intp)  # row 5 is not asked for
    sources: list[Any] = [SimpleNamespace(timestamp=s) for s in stamps[:5]] + [_Unread()]
    given_stamps = np.array([np.nan if s is None else float(s) for s in stamps]) if given else None
    got = event_times_of(occurred, sources, need, given_stamps, NOW)
    # its occurred_at, else its record's timestamp in range, else now
    assert got.tolist() == [1_764_590_400.123, 1_700_000_000.5, now, now, 1_764_590_401.0, now]
    assert event_times_of(occurred, [_Unread()] * 6, np.array([], np.intp), None, NOW).tolist() == [now] * 6


@pytest.mark.parametrize("asked", [["a", "b", "c"], ["c", "a"], []])
def test_an_outcomes_episodes_of_items_are_a_copy_of_theirs(asked: list[str]) -> None:
    episodes = np.zeros(3, EPISODE_DTYPE)
    episodes["opened_offset"], episodes["occurrences"], episodes["status"] = [7, 8, 9], [1, 2, 3], [1, 0, 2]
    outcome = EpisodeOutcome({}, ["a", "b", "c"], episodes)
    got = outcome.of(asked)
    assert got.dtype == EPISODE_DTYPE and got.tobytes() == episodes[["abc".index(i) for i in asked]].tobytes()
    got["occurrences"] = 99  # the caller's own records
    assert episodes["occurrences"].tolist() == [1, 2, 3]
