"""A small threaded HTTP server for ``/metrics`` and health probes, shared by both services.

Each service hands in how to render its own metrics registry and a probe per path
(``/healthz``, ``/readyz``): a probe returns ``(ok, body)`` and is answered as JSON with 200 when
ok, else 503. Probes run in the server's threads, so they only read state the service's loop wrote.
Every connection has a socket timeout: a client that sends nothing (or reads nothing) gives up its
handler thread after ``timeout_s`` instead of holding it forever.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

__all__ = ["DEFAULT_TIMEOUT_S", "Probe", "ProbeServer"]

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, dict[str, Any]]]

DEFAULT_TIMEOUT_S = 5.0  # a scrape or probe answers in milliseconds; anything slower is a stuck client


class ProbeServer:
    """Serves ``/metrics`` and ``probes`` on ``host:port`` (``port=0`` picks a free port).

    Binding happens in the constructor, so a port in use fails there with ``OSError``.
    """

    def __init__(
        self,
        *,
        render_metrics: Callable[[], bytes],
        probes: Mapping[str, Probe],
        host: str,
        port: int,
        name: str = "stockwatch-http",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        handler = _make_handler(render_metrics, dict(probes), timeout_s)
        self._server = _Server((host, port), handler)
        self._server.timeout = timeout_s
        self._name = name
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """The bound address."""
        return str(self._server.server_address[0])

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name=self._name, daemon=True)
        self._thread.start()
        log.info("serving /metrics, /healthz, /readyz on %s:%d", self.host, self.port)

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hung up or timed out mid-answer: one line, never a traceback on stderr
        log.debug("http: connection from %s ended with an error", client_address, exc_info=True)


def _make_handler(
    render_metrics: Callable[[], bytes], probes: dict[str, Probe], timeout_s: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_s  # StreamRequestHandler sets it on the connection's socket

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            probe = probes.get(path)
            if path == "/metrics":
                self._send(200, render_metrics(), CONTENT_TYPE_LATEST)
            elif probe is not None:
                ok, body = probe()
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
