"""The HTTP side of `stockwatch consume`: ``/metrics``, ``/healthz`` and ``/readyz``.

* ``/healthz`` — 200 while the poll loop has ticked within ``stale_s`` (the process is alive
  *and* making progress), else 503.
* ``/readyz`` — 200 when partitions are assigned, a model is loaded, no partition is stalled
  (work pending — lag, or records polled — and no commit for ``stall_after_s``; see
  :class:`StallWatch`) and the member is in a stable group whose commits go through (see
  :mod:`consumer.scoring.membership`), else 503 with what is missing (e.g. ``waiting for a model``).
* ``/metrics`` — the Prometheus text format of the service's own registry.

The loop writes :class:`HealthState` (plain attribute stores, atomic under the GIL); the server
thread only reads it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from consumer.ports import TopicPart
from consumer.scoring.metrics import ConsumerMetrics

__all__ = ["HealthServer", "HealthState", "StallWatch"]

log = logging.getLogger(__name__)


@dataclass
class HealthState:
    """What the loop reports about itself."""

    stale_s: float = 30.0
    last_tick: float = field(default_factory=time.monotonic)
    assigned: int = 0
    model_version: str | None = None
    waiting_for_model: bool = False
    stopping: bool = False
    stalled: list[str] = field(default_factory=list)  # "topic[partition]" (see StallWatch)
    group_problems: list[str] = field(default_factory=list)  # see consumer.scoring.membership

    def tick(self) -> None:
        """The loop is alive."""
        self.last_tick = time.monotonic()

    def healthz(self) -> tuple[bool, dict[str, Any]]:
        """(ok, body) for ``/healthz``."""
        age = time.monotonic() - self.last_tick
        return age <= self.stale_s, {"loop_tick_age_s": round(age, 3), "stale_after_s": self.stale_s}

    def readyz(self) -> tuple[bool, dict[str, Any]]:
        """(ok, body) for ``/readyz``."""
        missing = []
        if self.assigned == 0:
            missing.append("no partitions assigned")
        if self.model_version is None:
            missing.append("waiting for a model")
        if self.stopping:
            missing.append("shutting down")
        if self.stalled:
            missing.append("partitions stalled (no commit with work pending): " + ", ".join(self.stalled))
        missing.extend(self.group_problems)
        body = {"assigned_partitions": self.assigned, "model_version": self.model_version, "missing": missing}
        return not missing, body


class StallWatch:
    """Assigned partitions with work pending whose committed offset has not moved for ``after_s``.

    Work pending: lag (records behind the partition end) or records polled and not committed.
    A partition with nothing to do, newly assigned, or whose commit moved starts a new period.
    """

    def __init__(self, after_s: float, metrics: ConsumerMetrics) -> None:
        self.after_s = after_s
        self.metrics = metrics
        self._since: dict[TopicPart, tuple[float, int | None]] = {}  # start of the period, commit then

    def update(
        self, now: float, assigned: Set[TopicPart], busy: Set[TopicPart], committed: Mapping[TopicPart, int]
    ) -> list[TopicPart]:
        """The stalled partitions (also ``stockwatch_partition_stalled``)."""
        stalled = []
        for tp in set(self._since) - assigned:
            del self._since[tp]
            self.metrics.partition_stalled.labels(tp[0], str(tp[1])).set(0)
        for tp in sorted(assigned):
            since = self._since.get(tp)
            if since is None or tp not in busy or since[1] != committed.get(tp):
                self._since[tp] = (now, committed.get(tp))
            elif now - since[0] >= self.after_s:
                stalled.append(tp)
            self.metrics.partition_stalled.labels(tp[0], str(tp[1])).set(1 if tp in stalled else 0)
        return stalled


class HealthServer:
    """A small threaded HTTP server; ``port=0`` in the constructor picks a free port."""

    def __init__(self, state: HealthState, metrics: ConsumerMetrics, *, host: str, port: int) -> None:
        self.state = state
        self.metrics = metrics
        handler = _make_handler(state, metrics)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="stockwatch-http", daemon=True
        )
        self._thread.start()
        log.info("serving /metrics, /healthz, /readyz on port %d", self.port)

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


def _make_handler(state: HealthState, metrics: ConsumerMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, body = state.healthz() if path == "/healthz" else state.readyz()
                self._send(200 if ok else 503, orjson.dumps({"ok": ok, **body}), "application/json")
            else:
                self._send(404, b'{"error": "not found"}', "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return Handler
