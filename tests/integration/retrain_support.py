"""Helpers for the retrain-worker integration tests: seeding, settings, a worker thread, the status tail."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from config.settings import Settings
from consumer.adapters.kafka import StatusTail
from consumer.retraining.wiring import build_worker
from consumer.retraining.worker import RetrainWorker
from consumer.stores import store_from_settings
from detection import parse_item, train_model

KEY = "integration-control-key-0123456789"


def inventory_docs(
    n: int, seed: int, *, planted: float = 0.0, identical: bool = False
) -> list[dict[str, Any]]:
    """Plausible inventory documents; ``planted`` share gets absurd stock and price."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        lo = int(rng.integers(10, 60))
        hi = lo + int(rng.integers(100, 300))
        stock, price = int(rng.integers(lo, hi)), round(float(rng.uniform(1, 50)), 2)
        if rng.random() < planted:
            stock, price = int(rng.integers(20_000, 90_000)), round(float(rng.uniform(500, 2000)), 2)
        if identical:
            lo, hi, stock, price = 50, 200, 100, 10.0
        docs.append(
            {
                "_id": f"sku-{seed}-{i}",
                "stock_quantity": stock,
                "min_stock_level": lo,
                "max_stock_level": hi,
                "price": price,
            }
        )
    return docs


def publish_model(settings: Settings, seed: int = 1, n: int = 300) -> str:
    """Train on clean items and publish to the settings' store; returns the version."""
    items = [parse_item(d) for d in inventory_docs(n, seed)]
    return store_from_settings(settings).publish(train_model(items))


@pytest.fixture
def settings_factory(
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    mongo_uri: str,
    mongo_db: Any,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Any,
) -> Callable[..., Settings]:
    """``settings_factory(**overrides)`` → Settings on fresh topics, database and model dir (also in env)."""

    def make(**overrides: Any) -> Settings:
        env = {
            "kafka_bootstrap": kafka_bootstrap,
            "mongo_uri": mongo_uri,
            "mongo_db": mongo_db.name,
            "control_topic": topic_factory("control"),
            "status_topic": topic_factory("status"),
            "anomaly_topic": topic_factory("anomalies"),
            "model_dir": str(tmp_path / "models"),
            "control_key": KEY,
            "control_group_id": unique_name("workers"),
            "retrain_backoff_s": "0.2",
            "retrain_batch_size": "100",
            "worker_mongo_timeout_s": "1.5",
            "lease_ttl_s": "10",
        }
        env |= {k: str(v) for k, v in overrides.items()}
        for key, value in env.items():
            monkeypatch.setenv(f"STOCKWATCH_{key.upper()}", value)
        return Settings()

    return make


@contextmanager
def running_worker(settings: Settings, **retrainer_kw: Any) -> Iterator[RetrainWorker]:
    """A retrain worker serving in a thread until the block ends."""
    worker, closables = build_worker(settings, **retrainer_kw)
    thread = threading.Thread(target=worker.run, kwargs={"poll_s": 0.2}, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop_event.set()
        thread.join(60)
        for c in closables:
            c.close()


class Status:
    """Collects everything published on the status topic from creation on."""

    def __init__(self, settings: Settings) -> None:
        self.tail = StatusTail(settings.kafka_bootstrap, settings.status_topic)
        self.tail.start()
        self.seen: list[dict[str, Any]] = []

    def wait(
        self, pred: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 60.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while not pred(self.seen):
            if time.monotonic() > deadline:
                raise AssertionError(f"status condition not met in {timeout_s}s; seen: {self.seen}")
            self.seen += self.tail.poll(0.5)
        return self.seen

    def acks(self, command_id: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.seen
            if m.get("type") == "command_ack" and command_id in (None, m.get("command_id"))
        ]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.seen if m.get("type") == kind]

    def close(self) -> None:
        self.tail.close()
