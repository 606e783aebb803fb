"""Streaming helpers for the latency and hot-swap benchmarks.

* :func:`start_paced_producer` — a child process (its own GIL) that produces updates at a fixed
  rate: every 2 ms it sends the updates due by then, so the offered load is steady and the
  Kafka record timestamp (CreateTime, set when ``send`` is called) is the send time. It uses
  librdkafka when installed (kafka-python's producer alone could not offer 50 % of (b) on two
  CPUs shared with the broker and the service), as does the bare floor reader.
* :class:`OutputReader` — a thread reading an output topic from its beginning and keeping, per
  record, the receive time (ms), the record timestamp and the decoded event.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.common import BOOTSTRAP, encoded_updates, kafka_kwargs, librdkafka_conf, update_dict

TICK_S = 0.002


class _Sender:
    """The load generator's client: librdkafka when installed (a C producer leaves the machine's
    CPU to the broker and the service under test), else kafka-python. Either way the record
    timestamp (CreateTime) is the time of the ``send`` call."""

    def __init__(self) -> None:
        try:
            from confluent_kafka import Producer
        except ImportError:
            self.client = "kafka-python"
            self._kp = KafkaProducer(
                **kafka_kwargs(
                    KafkaProducer, bootstrap_servers=BOOTSTRAP, linger_ms=1, acks=1, batch_size=256 * 1024
                )
            )
            self._ck: Any = None
        else:
            self.client = "confluent-kafka"
            self._ck = Producer(librdkafka_conf({"bootstrap.servers": BOOTSTRAP, "linger.ms": 1, "acks": 1}))

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        if self._ck is None:
            self._kp.send(topic, value=value, key=key)
            return
        while True:
            try:
                self._ck.produce(topic, value, key)
                return
            except BufferError:
                self._ck.poll(0.01)

    def tick(self) -> None:
        if self._ck is not None:
            self._ck.poll(0)

    def close(self) -> None:
        if self._ck is None:
            self._kp.flush(timeout=60)
            self._kp.close(timeout=10)
        else:
            self._ck.flush(60)


def _paced_produce(topic: str, rate: float, seconds: float, start: int, out: Queue[dict[str, Any]]) -> None:
    n = int(rate * seconds)
    updates = encoded_updates(start, n)
    sender = _Sender()
    sent, behind_max = 0, 0.0
    began = time.perf_counter()
    while sent < n:
        now = time.perf_counter() - began
        due = min(n, int(now * rate) + 1)
        behind_max = max(behind_max, (due - sent) / rate)
        while sent < due:
            key, value = updates[sent]
            sender.send(topic, key, value)
            sent += 1
        sender.tick()
        pause = (sent / rate) - (time.perf_counter() - began)
        if pause > 0:
            time.sleep(min(pause, TICK_S))
    sender.close()
    elapsed = time.perf_counter() - began
    out.put(
        {
            "sent": sent,
            "seconds": elapsed,
            "rate": sent / elapsed,
            "max_behind_s": behind_max,
            "client": sender.client,
        }
    )


def start_paced_producer(
    topic: str, rate: float, seconds: float, *, start: int = 1_000_000
) -> tuple[BaseProcess, Queue[dict[str, Any]]]:
    """Start the producer process; its result dict arrives on the returned queue when done."""
    ctx = mp.get_context("spawn")
    out: Queue[dict[str, Any]] = ctx.Queue()
    proc = ctx.Process(target=_paced_produce, args=(topic, rate, seconds, start, out), daemon=True)
    proc.start()
    return proc, out


def send_probe(topic: str, i: int) -> None:
    """One planted anomaly (to see that the consumer is up and scoring)."""
    import numpy as np

    producer = KafkaProducer(**kafka_kwargs(KafkaProducer, bootstrap_servers=BOOTSTRAP))
    d = update_dict(i, np.random.default_rng(i), planted=True)
    d["event_id"] = f"probe-{i}"
    producer.send(topic, value=orjson.dumps(d), key=d["item_id"].encode())
    producer.close(timeout=10)


def wait_until_scoring(reader: OutputReader, topic: str, log_name: str, *, attempts: int = 120) -> None:
    """Send planted anomalies to ``topic`` (one a second) until one comes back through ``reader``:
    the service under test is up and scoring. Raises after ``attempts`` probes."""
    for i in range(attempts):
        send_probe(topic, i)
        if reader.wait_for(1, 1.0):
            return
    raise RuntimeError(f"stockwatch consume produced nothing; see .bench/logs/{log_name}")


def _floor_read(topic: str, stop: Any, out: Queue[Any]) -> None:
    import numpy as np

    stamps: list[int] = []
    lat: list[float] = []
    try:
        from confluent_kafka import OFFSET_BEGINNING, Consumer
        from confluent_kafka import TopicPartition as CTopicPartition
    except ImportError:
        consumer = KafkaConsumer(
            **kafka_kwargs(
                KafkaConsumer,
                bootstrap_servers=BOOTSTRAP,
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=20,
            )
        )
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        while not stop.is_set():
            for recs in consumer.poll(timeout_ms=50).values():
                now = time.time() * 1000.0
                stamps.extend(r.timestamp for r in recs)
                lat.extend(now - r.timestamp for r in recs)
        consumer.close(autocommit=False)
    else:
        ck = Consumer(
            librdkafka_conf(
                {"bootstrap.servers": BOOTSTRAP, "group.id": f"{topic}.floor", "fetch.wait.max.ms": 20}
            )
        )
        ck.assign([CTopicPartition(topic, 0, OFFSET_BEGINNING)])
        while not stop.is_set():
            # consume(n, timeout) would wait for n messages: take what is there, else wait for one
            messages = ck.consume(num_messages=10_000, timeout=0)
            if not messages:
                first = ck.poll(0.05)
                messages = [] if first is None else [first]
            now = time.time() * 1000.0
            for m in messages:
                if m.error() is None:
                    ts = m.timestamp()[1]
                    stamps.append(ts)
                    lat.append(now - ts)
        ck.close()
    out.put((np.array(stamps, dtype=np.int64), np.array(lat)))


class FloorReader:
    """A bare consumer of ``topic`` in its own process: receive time - CreateTime of every record."""

    def __init__(self, topic: str) -> None:
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._out: Queue[Any] = ctx.Queue()
        self._proc = ctx.Process(target=_floor_read, args=(topic, self._stop, self._out), daemon=True)
        self._proc.start()

    def stop(self, timeout_s: float = 60.0) -> tuple[Any, Any]:
        """Stop reading; returns (timestamps, latencies) arrays."""
        self._stop.set()
        result: tuple[Any, Any] = self._out.get(timeout=timeout_s)
        self._proc.join(10)
        return result


@dataclass
class Received:
    recv_ms: float
    timestamp_ms: int
    offset: int
    event: dict[str, Any]


@dataclass
class OutputReader:
    """Reads ``topic`` (partition 0) from the beginning in a thread until :meth:`stop`."""

    topic: str
    read_committed: bool = False
    records: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-reader", daemon=True)
        self._consumer = KafkaConsumer(
            **kafka_kwargs(
                KafkaConsumer,
                bootstrap_servers=BOOTSTRAP,
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=20,
                isolation_level="read_committed" if self.read_committed else "read_uncommitted",
            )
        )
        tp = TopicPartition(self.topic, 0)
        self._consumer.assign([tp])
        self._consumer.seek_to_beginning(tp)

    def start(self) -> OutputReader:
        self._thread.start()
        return self

    def _run(self) -> None:
        consumer, loads, out = self._consumer, orjson.loads, self.records
        while not self._stop.is_set():
            polled = consumer.poll(timeout_ms=50)
            now = time.time() * 1000.0
            for recs in polled.values():
                out.extend(Received(now, r.timestamp, r.offset, loads(r.value)) for r in recs)

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.records) >= count:
                return True
            time.sleep(0.05)
        return len(self.records) >= count

    def wait_idle(self, idle_s: float, timeout_s: float) -> None:
        """Return once nothing new arrived for ``idle_s`` (or after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        seen, since = len(self.records), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if len(self.records) != seen:
                seen, since = len(self.records), time.monotonic()
            elif time.monotonic() - since >= idle_s:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close(autocommit=False)
