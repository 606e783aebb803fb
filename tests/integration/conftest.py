"""Fixtures of the integration tests that run the scoring service in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from tests.integration.running import Running


@pytest.fixture
def started() -> Iterator[list[Running]]:
    """Services a test appends here are stopped after it (those still running)."""
    running: list[Running] = []
    yield running
    for r in running:
        if r.thread.is_alive():
            r.stop()


@pytest.fixture
def service_settings(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> Callable[..., Settings]:
    """Settings of a service on fresh topics (a 2-partition input), group, transactional id and
    model directory, polling 10 records at a time; keyword arguments override any of them."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kafka_bootstrap": kafka_bootstrap,
            "input_topic": topic_factory("in", partitions=2),
            "anomaly_topic": topic_factory("anomalies"),
            "dlq_topic": topic_factory("dlq"),
            "status_topic": topic_factory("status"),
            "decisions_topic": topic_factory("decisions"),
            "group_id": unique_name("group"),
            "transactional_id": unique_name("tx"),
            "model_dir": str(tmp_path / "models"),
            "http_port": 0,
            "poll_timeout_ms": 100,
            "model_poll_interval_s": 0.3,
            "session_timeout_ms": 10000,
            "create_missing_topics": False,
            "max_poll_records": 10,
            "delivery_retry_backoff_s": 0.2,
        }
        values.update(overrides)
        return Settings(**values)

    return make
