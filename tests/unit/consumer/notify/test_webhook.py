"""One webhook POST against a local HTTP server: outcomes per status, the payload, a masked URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from consumer.notify.webhook import Outcome, Webhook, mask_url, payload, slack_text
from tests.fakes import anomaly_events
from tests.schemas import validate

EVENT = {
    "anomaly_id": "ab" * 16,
    "item_id": "SKU-1",
    "severity": "high",
    "reasons": ["stock 50,000 is 250x its max level 200\n(usually 20%-80%)", "price"],
    "model_version": "20261201T000000Z-abcd",
}


class Server:
    def __init__(self) -> None:
        self.status = 200
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(outer.status)
                if 300 <= outer.status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None: ...

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/T000/SECRET-TOKEN?sig=xyz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (400, Outcome.DEAD),
        (422, Outcome.DEAD),
        (404, Outcome.RETRY),  # the endpoint is wrong, not the payload: held until fixed
        (401, Outcome.RETRY),
        (302, Outcome.RETRY),
        (307, Outcome.RETRY),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
    ],
)
def test_outcome_per_status(server: Server, status: int, outcome: Outcome) -> None:
    server.status = status
    result = Webhook(server.url, timeout_s=5).post(payload(EVENT))
    assert result.outcome is outcome and result.detail.startswith(f"HTTP {status}")
    assert len(server.bodies) == 1  # a redirect is not followed


def test_a_closed_port_is_retried_and_the_detail_has_no_url(server: Server) -> None:
    url = server.url
    server.httpd.shutdown()
    server.httpd.server_close()
    result = Webhook(url, timeout_s=2).post(b"{}")
    assert result.outcome is Outcome.RETRY
    assert "SECRET" not in result.detail and "127.0.0.1" not in result.detail


def test_payload_is_the_event_with_a_one_line_slack_text(server: Server) -> None:
    Webhook(server.url).post(payload(EVENT))
    body = orjson.loads(server.bodies[0])
    assert body["text"] == (
        "[HIGH] SKU-1: stock 50,000 is 250x its max level 200 (usually 20%-80%) (model 20261201T000000Z-abcd)"
    )
    assert {k: body[k] for k in EVENT} == EVENT
    assert slack_text({}) == "[ANOMALY] ?: anomalous (model ?)"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/services/T0/B0/SECRET", "https://hooks.example.com/***"),
        ("http://user:pw@127.0.0.1:8080/x?token=SECRET", "http://127.0.0.1:8080/***"),
        ("https://example.com", "https://example.com"),
        ("http://[::1", "<unparseable URL>"),
    ],
)
def test_masked_urls_never_show_path_query_or_password(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "https:///path-only"])
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(ValueError) as info:
        Webhook(url)
    assert "SECRET" not in str(info.value)


def test_repr_is_masked(server: Server) -> None:
    assert "SECRET" not in repr(Webhook(server.url)) and "SECRET" not in Webhook(server.url).safe_url


def test_the_payload_of_a_real_event_fits_its_schema() -> None:
    for event in anomaly_events(3):
        body = validate("webhook-payload", orjson.loads(payload(event)))
        assert body["text"] == f"[HIGH] {event['item_id']}: {event['reasons'][0]} (model v1)"


def test_the_text_says_which_event_of_an_episode_it_is() -> None:
    from consumer.notify.webhook import slack_text

    base = {"item_id": "SKU-1", "model_version": "v1", "severity": "high", "reasons": ["stock is negative"]}
    assert slack_text(base | {"status": "open"}) == "[HIGH] OPEN SKU-1: stock is negative (model v1)"
    assert slack_text(base | {"status": "open", "renotified": True}).startswith("[HIGH] STILL OPEN SKU-1:")
    assert slack_text(base | {"status": "escalated", "severity": "critical"}).startswith(
        "[CRITICAL] ESCALATED"
    )
    resolved = {"item_id": "SKU-1", "model_version": "v1", "status": "resolved", "occurrences": 3,
                "duration_s": 42.4, "max_severity": "high"}  # fmt: skip
    assert slack_text(resolved) == (
        "[RESOLVED] SKU-1: back to normal after 3 anomalous update(s) over 42s, max HIGH (model v1)"
    )
    assert slack_text(base) == "[HIGH] SKU-1: stock is negative (model v1)"  # every-update: as before
