"""What the retrain worker says on ``stockwatch.status``: command acknowledgements and events.

Every message is signed with the control key (:func:`consumer.wire.control.sign_message`, the
commands' scheme), so ``stockwatch ctl`` and the consumers can tell the worker's word from a forgery.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from consumer.ports import KafkaUnavailableError
from consumer.retraining.monitor import WorkerMonitor
from consumer.wire.control import Ack, sign_message

__all__ = ["StatusReporter", "StatusSink"]

log = logging.getLogger(__name__)


class StatusSink(Protocol):
    """``consumer.adapters.kafka.JsonPublisher``."""

    def publish(self, topic: str, messages: Any, *, key: bytes | None = None) -> None: ...


class StatusReporter:
    """Signs with ``key`` (unsigned without one) and publishes to ``topic``.

    :meth:`emit` and :meth:`ack` log a broker outage and return (the worker keeps serving);
    :meth:`publish` raises it, for callers that retry.
    """

    def __init__(
        self,
        sink: StatusSink,
        topic: str,
        *,
        worker: str,
        key: bytes | None = None,
        monitor: WorkerMonitor | None = None,
    ) -> None:
        self.sink, self.topic, self.worker = sink, topic, worker
        self._key = key
        self.monitor = monitor

    def ack(
        self,
        status: Ack,
        command_id: str | None,
        command: str | None,
        *,
        reason: str | None = None,
        result: Mapping[str, Any] | None = None,
        digest: str | None = None,
    ) -> None:
        """Publish a ``command_ack`` (only for commands: scheduled runs have no command_id).

        ``digest``: sha256 of the raw message a ``rejected`` ack answers, so the sender can tell
        a rejection of its own command from one of a message that merely claims its id.
        """
        if self.monitor is not None:
            self.monitor.ack(status, command, command_id)
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
        if digest is not None:
            msg["digest"] = digest
        self.emit(msg)

    def emit(self, msg: Mapping[str, Any]) -> None:
        """Publish one status message (``at`` is added when absent); an outage is logged."""
        try:
            self.publish(msg)
        except KafkaUnavailableError as exc:
            if self.monitor is not None:
                self.monitor.publish_failed()
            log.error("could not publish %s for command %s: %s", msg.get("type"), msg.get("command_id"), exc)

    def publish(self, msg: Mapping[str, Any]) -> None:
        """Sign and publish one status message; raises ``KafkaUnavailableError``."""
        fields = {"at": datetime.now(UTC).isoformat(), **msg}
        self.sink.publish(self.topic, [sign_message(fields, self._key)])
