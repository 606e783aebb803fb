"""The HTTP side of `stockwatch consume`: ``/metrics``, ``/healthz`` and ``/readyz``.

* ``/healthz`` — 200 while the poll loop has ticked within ``stale_s`` (the process is alive
  *and* making progress), else 503.
* ``/readyz`` — 200 when partitions are assigned and a model is loaded, else 503 with what is
  missing (for example ``waiting for a model``).
* ``/metrics`` — the Prometheus text format of the service's own registry.

The loop writes :class:`HealthState` (plain attribute stores, atomic under the GIL); the server
thread only reads it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from consumer.scoring.metrics import ConsumerMetrics

__all__ = ["HealthServer", "HealthState"]

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
        body = {"assigned_partitions": self.assigned, "model_version": self.model_version, "missing": missing}
        return not missing, body


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
