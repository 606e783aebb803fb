"""StatusListener without a control key: announcements cannot be verified, so none are read."""

from __future__ import annotations

import time

from config import Settings
from consumer.adapters.kafka import StatusListener


def test_without_a_control_key_the_status_topic_is_not_read() -> None:
    listener = StatusListener(Settings(control_key=None, kafka_bootstrap="127.0.0.1:1").kafka, key=None)
    started = time.monotonic()
    assert listener.poll(0.2) == []
    assert time.monotonic() - started >= 0.2  # it still paces the watcher's wait
    assert listener._consumer is None
    listener.close()
