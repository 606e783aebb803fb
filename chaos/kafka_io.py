"""The Kafka side of the scenarios: a paced producer, offsets (ends, commits, progress) and the
accounting of every input offset (a decision or a dead letter, how many times)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from bench.common import encoded_updates
from chaos.common import Ctx, wait_until

# ----------------------------------------------------------------------------- input


class PacedProducer:
    """Produces keyed stock updates at ``rate``/s in a thread until stopped or ``total`` sent.

    Send errors (a broker that is down) are counted, not raised: what counts is what reached the
    input topic, read back from its end offsets."""

    def __init__(self, bootstrap: str, topic: str, rate: float, total: int, *, start: int = 0) -> None:
        self.topic, self.rate, self.total, self.start = topic, rate, total, start
        self.errors = 0
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, retries=2_000_000,
            reconnect_backoff_max_ms=500, delivery_timeout_ms=120_000, request_timeout_ms=10_000,
        )  # fmt: skip
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-producer", daemon=True)
        self.sent = 0

    def begin(self) -> PacedProducer:
        self._thread.start()
        return self

    def _failed(self, _exc: BaseException) -> None:
        self.errors += 1

    def _run(self) -> None:
        chunk, updates = 5000, encoded_updates(self.start, 0)
        began = time.monotonic()
        while self.sent < self.total and not self._stop.is_set():
            due = min(self.total, int((time.monotonic() - began) * self.rate) + 1)
            while self.sent < due:
                if self.sent % chunk == 0:  # generated as needed: a long stream costs no memory
                    updates = encoded_updates(self.start + self.sent, min(chunk, self.total - self.sent))
                key, value = updates[self.sent % chunk]
                try:
                    self._producer.send(self.topic, value=value, key=key).add_errback(self._failed)
                except KafkaError:
                    self.errors += 1
                self.sent += 1
            time.sleep(0.01)
        self._producer.flush(timeout=150)

    def finish(self, timeout_s: float = 180.0) -> None:
        """Wait until everything is sent and flushed (or ``timeout_s``)."""
        self._thread.join(timeout_s)
        self._producer.close(timeout=10)

    def stop(self) -> None:
        self._stop.set()
        self.finish()


def produce_all(bootstrap: str, topic: str, n: int, *, start: int = 0) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    try:
        for key, value in encoded_updates(start, n):
            producer.send(topic, value=value, key=key)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


_clients: dict[tuple[str, str], Any] = {}


def _client(kind: str, bootstrap: str) -> Any:
    """One cached admin client / offsets reader per broker (polling creates no connection storm)."""
    key = (kind, bootstrap)
    if key not in _clients:
        if kind == "admin":
            _clients[key] = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="chaos-offsets")
        else:
            _clients[key] = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, isolation_level=kind)
    return _clients[key]


def close_clients() -> None:
    for client in _clients.values():
        client.close()
    _clients.clear()


def _asked(kind: str, bootstrap: str, ask: Callable[[Any], Any]) -> Any:
    try:
        return ask(_client(kind, bootstrap))
    except KafkaError:
        _clients.pop((kind, bootstrap)).close()  # a broker restart: start over with a fresh client
        raise


def end_offsets(bootstrap: str, topic: str, *, committed_only: bool = False) -> dict[int, int]:
    def ask(consumer: Any) -> dict[int, int]:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: int(off) for tp, off in ends.items()}

    kind = "read_committed" if committed_only else "read_uncommitted"
    return _asked(kind, bootstrap, ask)  # type: ignore[no-any-return]


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets on ``topic`` (partition -> offset; missing = none)."""
    offsets = _asked("admin", bootstrap, lambda admin: admin.list_group_offsets({group: None})).get(group, {})
    return {
        tp.partition: int(om.offset) for tp, om in offsets.items() if tp.topic == topic and om.offset >= 0
    }


def all_committed(bootstrap: str, group: str, topic: str) -> bool:
    ends = end_offsets(bootstrap, topic)
    done = committed(bootstrap, group, topic)
    return all(done.get(p, 0) >= end for p, end in ends.items())


def wait_advanced(
    bootstrap: str, group: str, topic: str, since: dict[int, int], timeout_s: float
) -> float | None:
    """Seconds until every partition has committed past ``since`` (None: not within ``timeout_s``).
    Call it while input still flows into every partition."""
    began = time.monotonic()

    def advanced() -> bool:
        done = committed(bootstrap, group, topic)
        return all(done.get(p, 0) > since.get(p, 0) for p in end_offsets(bootstrap, topic))

    return time.monotonic() - began if wait_until(advanced, timeout_s, 0.2) else None


def warm_up(bootstrap: str, topic: str, group: str, n: int = 200, timeout_s: float = 60.0) -> bool:
    """Produce ``n`` updates and wait until the group has committed them all: the service is up."""
    produce_all(bootstrap, topic, n, start=5_000_000)
    return wait_until(lambda: sum(committed(bootstrap, group, topic).values()) >= n, timeout_s)


# ----------------------------------------------------------------------------- accounting


@dataclass
class Tally:
    """Every input offset's decisions and dead letters, read from the output topics."""

    inputs: dict[int, int]  # partition -> end offset of the input
    decisions: Counter[tuple[int, int]]
    dead: Counter[tuple[int, int]]
    versions: Counter[str]

    @property
    def sent(self) -> int:
        return sum(self.inputs.values())

    @property
    def lost(self) -> int:
        return sum(
            1
            for p, end in self.inputs.items()
            for o in range(end)
            if (p, o) not in self.decisions and (p, o) not in self.dead
        )

    @property
    def duplicated(self) -> int:
        both = self.decisions + self.dead
        return sum(c - 1 for c in both.values() if c > 1)


def read_all(bootstrap: str, topic: str, *, committed_only: bool) -> list[Any]:
    """Every record of ``topic`` (all partitions) up to its current end (bounded: 60 s)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in tps):
            for recs in consumer.poll(timeout_ms=200).values():
                out.extend(recs)
        return out
    finally:
        consumer.close(autocommit=False)


def tally(bootstrap: str, topics: dict[str, str], *, committed_only: bool) -> Tally:
    decisions: Counter[tuple[int, int]] = Counter()
    versions: Counter[str] = Counter()
    for r in read_all(bootstrap, topics["decisions"], committed_only=committed_only):
        event = orjson.loads(r.value)
        decisions[(int(event["source"]["partition"]), int(event["source"]["offset"]))] += 1
        versions[str(event["model_version"])] += 1
    dead: Counter[tuple[int, int]] = Counter()
    for r in read_all(bootstrap, topics["dlq"], committed_only=committed_only):
        headers = {k: v for k, v in r.headers or []}
        dead[(int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"]))] += 1
    return Tally(end_offsets(bootstrap, topics["input"]), decisions, dead, versions)


def service_topics(ctx: Ctx, *, partitions: int) -> dict[str, str]:
    """Input (``partitions``), anomalies, dead letters, status, decisions: fresh for one scenario."""
    names = ctx.topics("input", partitions=partitions)
    names += ctx.topics("anomalies", "dlq", "status", "decisions")
    return dict(zip(("input", "anomalies", "dlq", "status", "decisions"), names, strict=True))
