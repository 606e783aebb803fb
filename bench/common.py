"""Shared helpers of the benchmark scripts: servers, fresh topics, synthetic updates, tables, JSON.

Every benchmark creates its topics under a per-run prefix (``bench-<hhmmss>-<hex>``) and deletes
them afterwards; every wait is bounded by a timeout.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

from detection import AnomalyModel, ForestParams, parse_item, train_model

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / ".bench"
BOOTSTRAP = os.environ.get("STOCKWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
MONGO_URI = os.environ.get("STOCKWATCH_MONGO_URI", "mongodb://127.0.0.1:27017")
ANOMALY_EVERY = 33  # one planted anomaly per 33 updates: 3.0 %
ITEMS = 50_000  # the updates cycle through sku-0 .. sku-49999
SALES_PER_UPDATE = 2.0  # units an item sells between two of its updates, on average


@functools.cache
def security_config() -> dict[str, Any]:
    """What the service's clients get besides the broker and client id (config/kafka.py): the
    STOCKWATCH_KAFKA_SECURITY_* / SASL / SSL settings and kafka_client_properties, librdkafka names."""
    from config import load_settings

    derived = load_settings().kafka.client_config(client_id="stockwatch-bench")
    return {k: v for k, v in derived.items() if k not in ("bootstrap.servers", "client.id")}


def kafka_kwargs(client: type, **explicit: Any) -> dict[str, Any]:
    """kafka-python keywords of ``client``: :func:`security_config` under its names, then ``explicit``."""
    from consumer.adapters.kafka.client_config import kafka_python_config

    return {**kafka_python_config(security_config(), client), **explicit}


def librdkafka_conf(explicit: dict[str, Any]) -> dict[str, Any]:
    """A confluent-kafka client's configuration: :func:`security_config`, then ``explicit``."""
    return {**security_config(), **explicit}


def run_prefix() -> str:
    """A fresh, sortable name prefix for this run's topics and groups."""
    return f"bench-{datetime.now(UTC):%H%M%S}-{secrets.token_hex(3)}"


# ----------------------------------------------------------------------------- topics


@contextlib.contextmanager
def fresh_topics(names: list[str], *, partitions: int = 1) -> Iterator[list[str]]:
    """Create ``names`` (which must not exist) and delete them when the block ends."""
    admin = KafkaAdminClient(
        **kafka_kwargs(KafkaAdminClient, bootstrap_servers=BOOTSTRAP, client_id="stockwatch-bench-admin")
    )
    try:
        admin.create_topics({n: {"num_partitions": partitions} for n in names}, wait_for_metadata=True)
        # A client that joins a group before the broker reports leaders for its topic gets no
        # partitions until its next metadata refresh (up to metadata.max.age.ms = 5 min in
        # kafka-python): wait until every partition of every new topic has a leader.
        wait_until(lambda: _all_led(admin, names, partitions), 30.0, 0.1)
        yield names
    finally:
        try:
            admin.delete_topics(names, timeout_ms=30_000)
        except KafkaError as exc:  # best effort: a leftover topic is named bench-* and harmless
            print(f"  (could not delete topics {names}: {exc!r})", file=sys.stderr)
        admin.close()


def _all_led(admin: KafkaAdminClient, names: list[str], partitions: int) -> bool:
    described = admin.describe_topics(names)
    return len(described) == len(names) and all(
        t["error_code"] == 0
        and len(t["partitions"]) == partitions
        and all(p["leader_id"] >= 0 for p in t["partitions"])
        for t in described
    )


# ----------------------------------------------------------------------------- data


def update_dict(i: int, rng: np.random.Generator, *, planted: bool) -> dict[str, Any]:
    """One realistic stock update; a planted one has an absurd quantity and price."""
    lo = int(rng.integers(20, 80))
    hi = lo + int(rng.integers(100, 300))
    stock = int(rng.integers(lo, hi))
    price = round(float(rng.uniform(2.0, 60.0)), 2)
    if planted:
        stock = 50_000 if i % 2 else -500
        price = round(price * 50, 2)
    return {
        "item_id": f"sku-{i % ITEMS}",
        "event_id": f"e-{i}",
        "stock_quantity": stock,
        "min_stock_level": lo,
        "max_stock_level": hi,
        "price": price,
    }


def is_planted(i: int) -> bool:
    return i % ANOMALY_EVERY == ANOMALY_EVERY - 1


def item_levels(seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each bench item's min, max and price (fixed: an update moves the item's stock, as a change
    event does; drawn as :func:`update_dict` draws them, so the seed's scores keep their meaning)."""
    rng = np.random.default_rng(seed)
    lo = rng.integers(20, 80, ITEMS)
    return lo, lo + rng.integers(100, 300, ITEMS), np.round(rng.uniform(2.0, 60.0, ITEMS), 2)


def encoded_updates(
    start: int, n: int, *, seed: int = 7, skew: float = 0.0, planted: bool = True
) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs of updates ``start .. start+n-1`` (≈3 % planted anomalies), vectorised.

    Update ``i`` is a full state of item ``i % 50,000`` (``skew`` 0: every item in turn, so each
    update of a window of 50,000 is a distinct item), or with ``skew`` s > 0 of an item drawn with
    Zipf popularity (item k's share ∝ 1/(k+1)^s; s = 1: the top 20 % of items get 86 % of the
    updates, as sales concentrate on few SKUs): that item's levels and price (:func:`item_levels`)
    and its stock (:func:`_stock`), so both detectors read the same updates as states (``seed``) or
    as changes of an item (``default``). ``planted=False``: the same updates without the planted
    anomalies (what the inventory holds of the items: their states before the stream).
    """
    rng = np.random.default_rng(seed + start)
    idx = np.arange(start, start + n)
    item = idx % ITEMS if skew <= 0 else _popular(rng, n, skew)
    levels_lo, levels_hi, prices = item_levels()
    lo, hi, price = levels_lo[item], levels_hi[item], prices[item]
    stock = _stock(item, idx, lo, hi, skew)
    bad = (idx % ANOMALY_EVERY == ANOMALY_EVERY - 1) & planted
    stock = np.where(bad, np.where(idx % 2 == 1, 50_000, -500), stock)
    price = np.where(bad, np.round(price * 50, 2), price)
    out = []
    dumps = orjson.dumps
    for i, j, s, a, b, p in zip(
        idx.tolist(), item.tolist(), stock.tolist(), lo.tolist(), hi.tolist(), price.tolist(), strict=True
    ):
        item_id = f"sku-{j}"
        value = {"item_id": item_id, "event_id": f"e-{i}", "stock_quantity": s, "min_stock_level": a,
                 "max_stock_level": b, "price": p}  # fmt: skip
        out.append((item_id.encode(), dumps(value)))
    return out


def train_bench_model(*, seed: int = 42, n: int = 10_000) -> AnomalyModel:
    """A model trained on normal updates only (the planted anomalies are far outside them)."""
    rng = np.random.default_rng(seed)
    items = [parse_item(update_dict(i, rng, planted=False)) for i in range(n)]
    return train_model(items, ForestParams(contamination=0.01))


def bulk_producer(**extra: Any) -> Any:
    """A producer tuned for throughput (large batches, a few ms linger)."""
    cfg: dict[str, Any] = {"linger_ms": 20, "batch_size": 512 * 1024, "acks": 1}
    cfg.update(extra)
    return KafkaProducer(
        **kafka_kwargs(
            KafkaProducer, bootstrap_servers=BOOTSTRAP, client_id="stockwatch-bench-producer", **cfg
        )
    )


def _shares(skew: float) -> np.ndarray:
    """Each item's share of the updates (Zipf ``skew``; 0: all alike)."""
    share: np.ndarray = 1.0 / np.arange(1, ITEMS + 1) ** skew
    normed: np.ndarray = share / share.sum()
    return normed


def _popular(rng: np.random.Generator, n: int, skew: float) -> np.ndarray:
    return rng.choice(ITEMS, size=n, p=_shares(skew))


def _stock(item: np.ndarray, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray, skew: float) -> np.ndarray:
    """Each update's stock: the item sells SALES_PER_UPDATE units per update of it on average (its
    share of the stream sets its pace) from a phase of its own, and is restocked to its max when it
    would fall below its min: a sawtooth, as sales and restocks move real stock."""
    span = hi - lo + 1
    phase = np.random.default_rng(13).integers(0, 1 << 30, ITEMS)[item]
    sold = np.floor(idx * (SALES_PER_UPDATE * _shares(skew)[item])).astype(np.int64)
    stock: np.ndarray = hi - (phase + sold) % span
    return stock


def stream_shape(n: int, *, skew: float, chunk: int = 50_000, seed: int = 7) -> dict[str, float]:
    """Item cardinality of :func:`preload`'s stream: items, updates per item, distinct items per window."""
    parts = [
        np.arange(start, min(start + chunk, n)) % ITEMS
        if skew <= 0
        else _popular(np.random.default_rng(seed + start), min(chunk, n - start), skew)
        for start in range(0, n, chunk)
    ]
    items = np.concatenate(parts)
    counts = np.bincount(items, minlength=ITEMS)
    counts = counts[counts > 0]

    def distinct(window: int) -> float:
        return float(
            np.mean([np.unique(items[a : a + window]).size for a in range(0, n - window + 1, window)])
        )

    return {"items": float(counts.size), "per_item_mean": float(counts.mean()), "per_item_max": float(counts.max()),
            "distinct_per_2000": distinct(min(2_000, n)), "distinct_per_10000": distinct(min(10_000, n))}  # fmt: skip


def preload(topic: str, n: int, *, chunk: int = 50_000, skew: float = 0.0) -> float:
    """Produce ``n`` updates to ``topic`` (:func:`encoded_updates`); returns the rate (events/s)
    including the final flush."""
    producer = bulk_producer()
    started = time.perf_counter()
    try:
        for start in range(0, n, chunk):
            for key, value in encoded_updates(start, min(chunk, n - start), skew=skew):
                producer.send(topic, value=value, key=key)
        producer.flush(timeout=300)
    finally:
        producer.close(timeout=30)
    return n / (time.perf_counter() - started)


# ----------------------------------------------------------------------------- subprocesses


def consume_env(settings: dict[str, Any]) -> dict[str, str]:
    """The environment of a ``stockwatch consume`` subprocess with these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")}
    env.update({f"STOCKWATCH_{k.upper()}": str(v) for k, v in settings.items()})
    env.setdefault("STOCKWATCH_KAFKA_BOOTSTRAP", BOOTSTRAP)
    env.setdefault("STOCKWATCH_HTTP_PORT", "0")
    return env


def start_consume(settings: dict[str, Any], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m consumer.cli consume`` as a subprocess (stderr/stdout to ``log_path``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "consume"],
        cwd=REPO,
        env=consume_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_process(proc: subprocess.Popen[bytes], *, timeout_s: float = 30.0) -> int:
    """SIGTERM, wait (bounded), SIGKILL if needed; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


def wait_until(cond: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> bool:
    """Poll ``cond`` until it holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step_s)
    return cond()


# ----------------------------------------------------------------------------- reporting


@dataclass
class Check:
    """One figure next to its target."""

    name: str
    value: float
    target: float
    higher_is_better: bool
    unit: str = ""
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def row(self) -> list[str]:
        op = "≥" if self.higher_is_better else "≤"
        return [self.name, f"{fmt(self.value)}{self.unit}", f"{op} {fmt(self.target)}{self.unit}",
                "PASS" if self.passed else "MISS", self.note]  # fmt: skip


@dataclass
class Section:
    """A benchmark's printable result: tables (header + rows), checks and raw JSON data."""

    title: str
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def fmt(v: float) -> str:
    if isinstance(v, int) or (abs(v) >= 100 and float(v).is_integer()):
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render(section: Section) -> str:
    parts = [f"### {section.title}", ""]
    for header, rows in section.tables:
        parts += [markdown_table(header, rows), ""]
    if section.checks:
        rows = [c.row() for c in section.checks]
        parts += [markdown_table(["figure", "measured", "target", "", "note"], rows), ""]
    parts += [f"* {n}" for n in section.notes]
    return "\n".join(parts).rstrip() + "\n"


def machine_info() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in load],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json(name: str, payload: dict[str, Any]) -> Path:
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
