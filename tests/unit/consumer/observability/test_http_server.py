"""The shared metrics/probe server on a real loopback socket: routes, status codes, timeouts."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from consumer.observability import ProbeServer


def get(port: int, path: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


class Flag:
    def __init__(self) -> None:
        self.ok = True

    def probe(self) -> tuple[bool, dict[str, Any]]:
        return self.ok, {"missing": [] if self.ok else ["something"]}


@pytest.fixture
def flag() -> Flag:
    return Flag()


@pytest.fixture
def server(flag: Flag) -> Iterator[ProbeServer]:
    srv = ProbeServer(
        render_metrics=lambda: b"demo_metric 1.0\n",
        probes={"/healthz": lambda: (True, {}), "/readyz": flag.probe},
        host="127.0.0.1",
        port=0,
        timeout_s=0.3,
    )
    srv.start()
    yield srv
    srv.stop()


def test_metrics_and_probes_are_served(server: ProbeServer, flag: Flag) -> None:
    status, body, ctype = get(server.port, "/metrics")
    assert (status, body) == (200, b"demo_metric 1.0\n") and ctype.startswith("text/plain")
    assert get(server.port, "/healthz")[0] == 200
    assert get(server.port, "/readyz?verbose=1")[0] == 200
    flag.ok = False
    status, body, ctype = get(server.port, "/readyz")
    assert status == 503 and ctype == "application/json"
    assert orjson.loads(body) == {"ok": False, "missing": ["something"]}
    assert get(server.port, "/nope")[0] == 404


def test_binds_loopback_only_when_asked(server: ProbeServer) -> None:
    assert server.host == "127.0.0.1"


def test_a_silent_client_loses_its_connection_after_the_timeout(server: ProbeServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent:
        started = time.monotonic()
        assert silent.recv(1024) == b""  # the server closed it: nothing was ever sent
        waited = time.monotonic() - started
    assert waited < 4.5  # well before our own 5 s read timeout would have fired
    assert get(server.port, "/healthz")[0] == 200  # and it still serves others


def test_a_port_in_use_fails_in_the_constructor(server: ProbeServer) -> None:
    with pytest.raises(OSError):
        ProbeServer(render_metrics=lambda: b"", probes={}, host="127.0.0.1", port=server.port)
