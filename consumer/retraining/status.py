"""What the retrain worker says on ``stockwatch.status``: command acknowledgements and events."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from consumer.ports import KafkaUnavailableError
from consumer.wire.control import Ack

__all__ = ["StatusReporter", "StatusSink"]

log = logging.getLogger(__name__)


class StatusSink(Protocol):
    """``consumer.adapters.kafka.JsonPublisher``."""

    def publish(self, topic: str, messages: Any, *, key: bytes | None = None) -> None: ...


class StatusReporter:
    """Publishes to ``topic``; a broker outage is logged, never raised (the worker keeps serving)."""

    def __init__(self, sink: StatusSink, topic: str, *, worker: str) -> None:
        self.sink, self.topic, self.worker = sink, topic, worker

    def ack(
        self,
        status: Ack,
        command_id: str | None,
        command: str | None,
        *,
        reason: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish a ``command_ack`` (only for commands: scheduled runs have no command_id)."""
        if command_id is None and status is not Ack.REJECTED:
            return
        msg: dict[str, Any] = {
            "type": "command_ack",
            "status": status.value,
            "command_id": command_id,
            "command": command,
            "worker": self.worker,
        }
        if reason:
            msg["reason"] = reason
        if result is not None:
            msg["result"] = dict(result)
        self.emit(msg)

    def emit(self, msg: dict[str, Any]) -> None:
        """Publish one status message (``at`` is added when absent)."""
        msg.setdefault("at", datetime.now(UTC).isoformat())
        try:
            self.sink.publish(self.topic, [msg])
        except KafkaUnavailableError as exc:
            log.error("could not publish %s for command %s: %s", msg.get("type"), msg.get("command_id"), exc)
