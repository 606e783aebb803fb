"""In-memory fakes shared by the unit tests of pure logic (never stand-ins for Kafka or Mongo behaviour)."""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from consumer.ports import DeliveryError, OutputRecord

Rec = namedtuple("Rec", "topic partition offset timestamp key value headers")
TP = ("in", 0)


@dataclass
class FakeDecisions:
    scores: np.ndarray[Any, Any]
    is_anomaly: np.ndarray[Any, Any]
    features: np.ndarray[Any, Any]

    def severity(self, i: int) -> str:
        return "high"

    def reasons(self, i: int) -> tuple[str, ...]:
        return (f"row {i} looks odd",)


class FakeModel:
    """Anomalous <=> stock above 1000; counts decide calls to prove one call per batch."""

    version = "20261125T180102Z-1a2b3c4d"
    threshold = 0.0

    def __init__(self) -> None:
        self.calls: list[int] = []

    def decide_features(self, x: np.ndarray[Any, Any]) -> FakeDecisions:
        self.calls.append(len(x))
        scores = np.where(x[:, 0] > 1000, -0.2, 0.1)
        return FakeDecisions(scores, scores < self.threshold, x)


def rec(offset: int, obj: Any, *, partition: int = 0, raw: bytes | None = None) -> Rec:
    value = raw if raw is not None else orjson.dumps(obj)
    key = obj.get("item_id", "").encode() if isinstance(obj, dict) else None
    return Rec("in", partition, offset, 1_000 + offset, key, value, [])


def item(i: int, stock: float = 50) -> dict[str, Any]:
    return {
        "item_id": f"SKU-{i}",
        "stock_quantity": stock,
        "min_stock_level": 10,
        "max_stock_level": 100,
        "price": 5,
    }


class FakeSource:
    """One or more partitions of JSON records; ``poll`` hands out up to ``max_records`` per call."""

    def __init__(self, records: dict[tuple[str, int], list[Rec]]) -> None:
        self.records = records
        self.position = dict.fromkeys(records, 0)
        self.assigned = set(records)
        self.seeks: list[dict[tuple[str, int], int]] = []

    def subscribe(self, listener: Any = None) -> None:
        self.listener = listener

    def rejoin(self) -> None:
        self.rejoined = getattr(self, "rejoined", 0) + 1

    def group_state(self) -> str:
        return "stable"

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

    def interrupt(self) -> None: ...

    def discard(self) -> bool:
        return False

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


def anomaly_events(n: int, *, version: str = "v1", topic: str = "in") -> list[dict[str, Any]]:
    """``n`` real anomaly events (the one event builder), items SKU-0 … with rising stock."""
    from datetime import UTC, datetime

    from consumer.wire.events import Coordinates, build_events

    stocks = np.arange(n, dtype=np.float64) * 1000 + 5000
    features = np.column_stack([stocks] + [np.full(n, 1.0 + k) for k in range(6)])
    scores = np.full(n, -0.2)
    items = [
        {"item_id": f"SKU-{i}", "event_id": None, "stock_quantity": float(s), "min_stock_level": 10.0,
         "max_stock_level": 100.0, "price": 5.0}
        for i, s in enumerate(stocks)
    ]  # fmt: skip
    built = build_events(
        FakeDecisions(scores, scores < 0, features),
        np.arange(n),
        item_ids=[str(it["item_id"]) for it in items],
        event_ids=[None] * n,
        sources=[Coordinates(topic, 0, i) for i in range(n)],
        item=lambda i: items[i],
        version=version,
        threshold=0.0,
        now=datetime(2026, 12, 1, tzinfo=UTC),
    )
    return [anomaly for _, _, anomaly in built if anomaly is not None]


class MemoryChangelog:
    """A changelog topic in memory: partition -> [(key, value)] in order (fills from published outputs)."""

    def __init__(self, topic: str = "g.in.state") -> None:
        self.topic = topic
        self.partitions: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        self.reads: list[int] = []
        self.deleted: dict[int, int] = {}  # per partition: the log start offset (records deleted below it)
        self.truncations: list[tuple[int, int]] = []
        self.refuses = False

    def append(self, outputs: Sequence[OutputRecord]) -> None:
        for o in outputs:
            if o.topic == self.topic:
                assert o.partition is not None
                self.partitions.setdefault(o.partition, []).append((o.key, o.value))

    def read(self, partition: int, *, tick: Any = None) -> tuple[list[bytes | None], list[bytes | None]]:
        self.reads.append(partition)
        records = self.partitions.get(partition, [])
        return [k for k, _ in records], [v for _, v in records]

    def end_offset(self, partition: int) -> int:
        return self.deleted.get(partition, 0) + len(self.partitions.get(partition, []))

    def truncate(self, partition: int, before: int) -> bool:
        """DeleteRecords: the records below offset ``before`` go (``refuses``: a compact-only topic)."""
        if self.refuses:
            return False
        gone = before - self.deleted.get(partition, 0)
        if gone > 0:
            self.partitions[partition] = self.partitions.get(partition, [])[gone:]
            self.deleted[partition] = before
        self.truncations.append((partition, before))
        return True

    def close(self) -> None: ...


def foreground_store(changelog: Any) -> Any:
    """A StateStore whose truncator runs on the caller's thread: two runs of the same stream cut
    the same rewrite slices (a background thread makes when a cycle's start is read a race)."""
    from consumer.scoring.state.store import StateStore

    store = StateStore(changelog)
    store.truncator.background = False
    return store
