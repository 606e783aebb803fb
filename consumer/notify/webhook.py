"""One webhook POST with the standard library (urllib): the payload, the outcome, a masked URL.

The payload is the anomaly event itself plus a Slack-compatible one-line ``text`` (severity, the
episode's status when it has one — open, escalated, resolved —, item, first reason, model version).
Outcomes: 2xx ``delivered``; 408, 429, 5xx, timeouts and connection errors ``retry``; so do 3xx
(redirects are not followed: a POST must not turn into a GET), 401, 403, 404, 405 and 410 — the
endpoint is misconfigured, and dropping every alert until someone notices would lose them all; any
other 4xx ``dead`` — the webhook will never take this payload. The URL may carry a token in its
path or query: logs only ever show :func:`mask_url`; a refused URL is described, never quoted.
"""

from __future__ import annotations

import http.client
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import orjson

__all__ = ["Outcome", "PostResult", "Webhook", "mask_url", "payload", "slack_text", "url_problem"]

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 500
RETRIABLE_STATUS = frozenset({408, 429})
# the endpoint, not the payload, is wrong (moved, auth, gone): held and retried until fixed, never dropped
MISCONFIGURED_STATUS = frozenset({401, 403, 404, 405, 410})


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class PostResult:
    outcome: Outcome
    detail: str  # "HTTP 503", "timed out", "connection refused" … (never the URL)


def mask_url(url: str) -> str:
    """``scheme://host[:port]/***``: no user info, path or query (they may hold a token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    rest = "/***" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as a webhook, in words that never quote it (None: usable)."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return "contains a space or a control character"
    try:
        parts = urlsplit(url)
    except ValueError:  # only a bracketed (IPv6) host that does not close
        return "has a malformed [IPv6] host"
    if parts.scheme.lower() not in ("http", "https") or not url.lower().startswith(f"{parts.scheme}://"):
        return "is not an http:// or https:// URL"
    if not parts.hostname:
        return "has no host"
    try:
        parts.port  # noqa: B018 - parsed on access
    except ValueError:
        return "has a port that is not a number from 0 to 65535"
    return None


def slack_text(event: dict[str, Any]) -> str:
    """One line: ``[HIGH] SKU-1: stock 50,000 is … (model 20261201T…)``; an episode's events say
    which: ``[HIGH] OPEN SKU-1: …``, ``[CRITICAL] ESCALATED …``, ``[HIGH] STILL OPEN …`` (renotified),
    ``[RESOLVED] SKU-1: back to normal after 3 anomalous updates over 42s, max HIGH (model …)``."""
    status = event.get("status")
    item, model = event.get("item_id", "?"), event.get("model_version", "?")
    if status == "resolved":
        text = (
            f"[RESOLVED] {item}: back to normal after {event.get('occurrences', '?')} anomalous update(s) "
            f"over {_seconds(event.get('duration_s'))}, max {str(event.get('max_severity', '?')).upper()} "
            f"(model {model})"
        )
        return " ".join(text.split())[:MAX_TEXT_CHARS]
    reasons = event.get("reasons") or []
    first = str(reasons[0]) if reasons else "anomalous"
    severity = str(event.get("severity") or "anomaly").upper()
    label = {"open": "STILL OPEN " if event.get("renotified") else "OPEN ", "escalated": "ESCALATED "}
    text = f"[{severity}] {label.get(str(status), '')}{item}: {first} (model {model})"
    return " ".join(text.split())[:MAX_TEXT_CHARS]


def _seconds(value: object) -> str:
    return f"{float(value):.0f}s" if isinstance(value, int | float) else "?"


def payload(event: dict[str, Any]) -> bytes:
    """The POST body: ``text`` first, then every field of the event."""
    return orjson.dumps({"text": slack_text(event), **event})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx surfaces as an HTTPError (dead payload) instead of a GET elsewhere


class Webhook:
    """POSTs JSON bodies to one URL (``timeout_s`` per request)."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        problem = url_problem(url)
        if problem is not None:
            raise ValueError(f"the webhook URL {problem} (expected like https://hooks.example.com/...)")
        self._url, self.safe_url, self.timeout_s = url, mask_url(url), timeout_s
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __repr__(self) -> str:
        return f"Webhook({self.safe_url})"

    def post(self, body: bytes) -> PostResult:
        """One attempt; never raises for network or HTTP errors (they are outcomes)."""
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "stockwatch-notify"},
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read(64 * 1024)  # drain a little so the connection closes cleanly
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
        except urllib.error.URLError as exc:
            return PostResult(Outcome.RETRY, _describe(exc.reason))
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            return PostResult(Outcome.RETRY, _describe(exc))
        if 200 <= status < 300:
            return PostResult(Outcome.DELIVERED, f"HTTP {status}")
        if status in RETRIABLE_STATUS or status >= 500:
            return PostResult(Outcome.RETRY, f"HTTP {status}")
        if 300 <= status < 400 or status in MISCONFIGURED_STATUS:
            return PostResult(
                Outcome.RETRY, f"HTTP {status}: check the webhook URL (redirects are not followed)"
            )
        return PostResult(Outcome.DEAD, f"HTTP {status}")


def _describe(error: object) -> str:
    """A short reason without the URL (socket errors never contain it; the type says enough)."""
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return type(error).__name__
