"""The demo's plumbing: the services as subprocesses, waits, and reading the topics it prints."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from consumer.adapters.kafka import TopicTail
from consumer.adapters.kafka.connect import Broker
from consumer.wire.events import DLQ_HEADER_ERROR, DLQ_HEADER_REASON

__all__ = ["Services", "drain", "read_dead_letters", "retrain_summary", "say", "swapped_in", "wait_for"]


def say(text: str) -> None:
    print(text, flush=True)


class Services:
    """The real services (and one-shot commands) as subprocesses of the ``stockwatch`` CLI."""

    def __init__(self, env: Mapping[str, str], logs: Path) -> None:
        self.env, self.logs = dict(env), logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "consumer.cli", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        cmd = [sys.executable, "-m", "consumer.cli", *args]
        return subprocess.run(cmd, env=self.env, capture_output=True, timeout=timeout, check=False)

    def stop_all(self) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: gave up waiting for {what} after {timeout:.0f}s (logs in .demo/)")
        time.sleep(0.2)


def show_event(event: dict[str, Any], labels: Mapping[str, str]) -> str:
    """One alert as a team sees it: item, severity (0-100), kind and rules, the first reason."""
    mark = f"  ← planted: {labels[event['event_id']]}" if event.get("event_id") in labels else ""
    if event.get("status") == "resolved":  # a normal update closed the item's alert episode
        return (f"  {event['item_id']:<10} resolved after {event['occurrences']} anomalous update(s), "
                f"{event['duration_s']:.0f} s (worst: {event['max_severity']}){mark}")  # fmt: skip
    reason = event["reasons"][0] if event["reasons"] else ""
    if "kind" not in event:  # a seed model's event: no kind, rules or calibrated severity
        return f"  {event['item_id']:<10} {event['severity']:<8} score {event['score']:+.3f}  {reason}{mark}"
    rules = ",".join(event["rules"]) or "-"
    return (
        f"  {event['item_id']:<10} {event['severity']:<8} {event['severity_score']:5.1f}  "
        f"{event['kind']:<12} {rules:<14} {reason}{mark}"
    )


def drain(
    tail: TopicTail, seconds: float, sink: list[dict[str, Any]], labels: Mapping[str, str], *, until: int = 0
) -> None:
    """Print anomaly events as they arrive for ``seconds`` (or until ``until`` planted ones arrived).

    A seed model flags about one normal update in ten at low severity: those are counted, not
    printed; every event of the default detector is printed.
    """
    quiet = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _key, value, _headers in tail.poll(0.3):
            event = orjson.loads(value)
            sink.append(event)
            if (
                "kind" in event
                or "status" in event
                or event.get("event_id") in labels
                or event.get("severity") not in ("none", "low")
            ):
                say(show_event(event, labels))
            else:
                quiet += 1
        if until and len({e.get("event_id") for e in sink} & set(labels)) >= until:
            break
    if quiet:
        say(f"  (+ {quiet} low-severity anomaly events not shown)")


def read_dead_letters(bootstrap: Broker, topic: str, expect: int) -> list[str]:
    """``reason: error`` of each dead letter (waits up to 10 s for ``expect`` of them)."""
    dlq = TopicTail(bootstrap, topic)
    dead: list[str] = []
    deadline = time.monotonic() + 10
    try:
        while len(dead) < expect and time.monotonic() < deadline:
            dead += [
                f"{h[DLQ_HEADER_REASON].decode()}: {h[DLQ_HEADER_ERROR].decode()}"
                for _k, _v, h in dlq.poll(0.5)
            ]
    finally:
        dlq.close()
    return dead


def retrain_summary(stdout: bytes) -> str:
    """One line from ``stockwatch ctl retrain``'s final acknowledgement."""
    lines = [orjson.loads(line) for line in stdout.splitlines() if line.startswith(b"{")]
    final = lines[-1] if lines else {}
    result = final.get("result", {})
    snapshot = result.get("snapshot", {})
    return (
        f"{final.get('status', '?')}: {result.get('status', '?')} version {result.get('version')}, "
        f"trained on {snapshot.get('usable', '?')} items read in {snapshot.get('seconds', '?')} s, "
        f"gate passed: {result.get('gate', {}).get('passed')}"
    )


def swapped_in(log: Path, version: str) -> Callable[[], bool]:
    """Whether the consumer's log (JSON lines) has a line about swapping ``version`` in."""

    def check() -> bool:
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        return any("swap" in line and version in line for line in lines)

    return check
