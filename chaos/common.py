"""Shared pieces of the scenarios: the run context (stack, names, fresh topics, the services it
started as subprocesses), one result row, bounded waits, /metrics, models (the Kafka side:
chaos/kafka_io.py).

Every scenario gets fresh topics and groups (``chaos-<hhmmss>-<hex>.*``), and every wait is bounded.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from bench.common import train_bench_model
from chaos.stack import REPO, ChaosStack
from detection import ModelStore

CONTROL_KEY = "chaos-control-key-0123456789abcdef0123"  # >= 32 bytes, this suite's stack only
LOG_DIR = REPO / ".chaos" / "logs"


@dataclass
class Result:
    """One row of the table: what was sent, what was lost or duplicated, how long recovery took."""

    scenario: str
    variant: str
    sent: int = 0
    lost: int = 0
    duplicated: int = 0
    recovery_s: float | None = None
    ok: bool = True
    checks: list[str] = field(default_factory=list)  # what was verified (or what failed)
    seconds: float = 0.0
    started: float = field(default_factory=time.monotonic, repr=False)  # made as its variant begins

    def progress(self) -> str:
        """The runner's progress line for this row: which scenario, which variant, its own seconds."""
        variant = f" [{self.variant}]" if self.variant else ""
        return f"chaos: {self.scenario}{variant}: {'PASS' if self.ok else 'FAIL'} ({self.seconds:.0f} s)"

    def fail(self, why: str) -> None:
        self.ok = False
        self.checks.append(f"FAILED: {why}")

    def check(self, cond: bool, what: str) -> bool:
        """Record ``what`` as verified, or as a failure."""
        if cond:
            self.checks.append(what)
        else:
            self.fail(what)
        return cond


@dataclass
class Ctx:
    """What every scenario gets: the stack, the run's name prefix, quick or full sizes."""

    stack: ChaosStack
    quick: bool
    prefix: str = field(default_factory=lambda: f"chaos-{datetime.now(UTC):%H%M%S}-{secrets.token_hex(3)}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    serial: int = 0

    @property
    def bootstrap(self) -> str:
        return self.stack.bootstrap

    def name(self, what: str) -> str:
        self.serial += 1
        return f"{self.prefix}.{self.serial}.{what}"

    def topics(self, *names: str, partitions: int = 1) -> list[str]:
        """Fresh topics (``partitions`` each), every partition led before returning."""
        full = [self.name(n) for n in names]
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="chaos-admin")
        try:
            admin.create_topics({n: {"num_partitions": partitions} for n in full}, wait_for_metadata=True)
            wait_until(lambda: _all_led(admin, full, partitions), 30.0, 0.1)
        finally:
            admin.close()
        return full

    def spawn(self, args: list[str], settings: dict[str, Any], log_name: str) -> subprocess.Popen[bytes]:
        """``python -m consumer.cli <args>`` with exactly these settings (as STOCKWATCH_* variables)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")}
        env.update({f"STOCKWATCH_{k.upper()}": str(v) for k, v in settings.items()})
        env["PYTHONPATH"] = str(REPO)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        with (LOG_DIR / f"{self.prefix}-{log_name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "consumer.cli", *args], cwd=REPO, env=env, stdout=log, stderr=log
            )
        self.procs.append(proc)
        return proc

    def consume_settings(self, topics: dict[str, str], model_dir: Path, **extra: Any) -> dict[str, Any]:
        """Settings of a ``stockwatch consume`` on this stack: small batches, a short session."""
        values: dict[str, Any] = {
            "kafka_bootstrap": self.bootstrap,
            "mongo_uri": self.stack.mongo_uri,
            "input_topic": topics["input"],
            "anomaly_topic": topics["anomalies"],
            "dlq_topic": topics["dlq"],
            "status_topic": topics["status"],
            "decisions_topic": topics["decisions"],
            "group_id": topics["input"] + ".group",
            "model_dir": model_dir,
            "http_port": free_port(),
            "http_host": "127.0.0.1",
            "poll_timeout_ms": 100,
            "max_poll_records": 200,
            "model_poll_interval_s": 0.3,
            "session_timeout_ms": 6000,
            "create_missing_topics": "false",
            "delivery_retry_backoff_s": 0.2,
        }
        values.update(extra)
        return values

    def stop_all(self) -> None:
        """Stop what the suite started and is still running (SIGKILL: nothing of theirs matters now)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.procs.clear()


def _all_led(admin: KafkaAdminClient, names: list[str], partitions: int) -> bool:
    described = admin.describe_topics(names)
    return len(described) == len(names) and all(
        t["error_code"] == 0
        and len(t["partitions"]) == partitions
        and all(p["leader_id"] >= 0 for p in t["partitions"])
        for t in described
    )


def split_seconds(results: list[Result], began: float, ended: float) -> None:
    """Give each row of one scenario its own seconds: from its start (the first: the scenario's)
    to the next row's start (the last: the scenario's end); rows a scenario timed itself keep theirs."""
    bounds = [began, *(max(began, r.started) for r in results[1:]), ended]
    for r, start, end in zip(results, bounds, bounds[1:], strict=False):
        if not r.seconds:
            r.seconds = max(0.0, end - start)


def wait_until(cond: Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if cond():
                return True
        except KafkaError:
            pass  # a broker that is restarting: ask again
        time.sleep(step_s)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def terminate(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    """SIGTERM and wait; SIGKILL after ``timeout_s``. Returns the exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


def metric(port: int, name: str) -> float | None:
    """The sum of a Prometheus metric's samples on a service's /metrics, None if unreachable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def publish_model(model_dir: Path, *, seed: int = 42) -> str:
    return ModelStore(model_dir).publish(train_bench_model(seed=seed, n=3000))
