"""docker-compose.yml's StockWatch services, run as the local processes their containers would be.

No Docker engine here: each service's environment and command are rendered from the compose file
(interpolation included, :mod:`tests.unit.deploy.compose`) and run as ``python -m consumer.cli
<command>`` (the image's entrypoint is ``stockwatch``) against the local stack. What a container
would see differently is mapped, and only that: ``kafka:9092`` -> the test broker,
``mongodb://mongo:27017`` -> the test MongoDB, mounts -> temporary directories (bind mounts -> the
repository's directories), and the names that would collide with other users of the shared
broker (topics, consumer groups, the database, the published HTTP port) -> fresh ones.
A crash (a non-zero exit or a traceback before its time) fails the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.unit.deploy.compose import load_compose, service_command, service_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"STOCKWATCH_CONTROL_KEY": "compose-test-control-key-0123456789abcdef", "STOCKWATCH_MODEL_SIGNING_KEY": "compose-test-signing-key-0123456789abcdef"}  # fmt: skip
CLI = [sys.executable, "-m", "consumer.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """The compose file rendered for this test, with the local mappings."""

    def __init__(self, tmp: Path, kafka: str, mongo: str, db: str, unique: Callable[[str], str]) -> None:
        self.tmp = tmp
        self.compose = load_compose(ROOT / "docker-compose.yml", KEYS)
        self.services: dict[str, Any] = self.compose["services"]
        self.hosts = {"kafka:9092": kafka, "mongodb://mongo:27017": mongo}
        self.http_port = str(free_port())
        self.fresh = {
            "STOCKWATCH_MONGO_DB": db,
            "STOCKWATCH_GROUP_ID": unique("compose-scorer"),
            "STOCKWATCH_CONTROL_GROUP_ID": unique("compose-worker"),
            **{
                f"STOCKWATCH_{what}_TOPIC": unique(f"compose-{what.lower()}")
                for what in ("INPUT", "ANOMALY", "DLQ", "CONTROL", "STATUS")
            },
        }
        data = tmp / "data"  # what the user puts in ./data for the trainer
        data.mkdir()
        shutil.copy(ROOT / "examples/items.jsonl", data / "items.jsonl")
        self.bind_sources = {"./data": data}

    def mounts(self, name: str) -> dict[str, Path]:
        """Container path -> local directory for each of the service's volumes."""
        out = {}
        for volume in self.services[name].get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                local = self.bind_sources.get(source, ROOT / source)
            else:  # a named volume: one directory per volume, shared by the services
                local = self.tmp / "volumes" / source
                local.mkdir(parents=True, exist_ok=True)
            out[target] = local
        return out

    def _local(self, value: str, mounts: dict[str, Path]) -> str:
        for host, local in self.hosts.items():
            value = value.replace(host, local)
        for target, local in mounts.items():
            if value == target or value.startswith(target + "/"):
                value = str(local) + value[len(target) :]
        return value

    def env(self, name: str) -> dict[str, str]:
        """The service's rendered environment, mapped; the rest of os.environ minus STOCKWATCH_*."""
        mounts = self.mounts(name)
        rendered = {k: self._local(v, mounts) for k, v in service_env(self.services[name], KEYS).items()}
        rendered.update({k: v for k, v in self.fresh.items() if k in rendered})
        rendered.update({k: v for k, v in self.fresh.items() if k == "STOCKWATCH_CONTROL_GROUP_ID"})
        if "STOCKWATCH_HTTP_PORT" in rendered:
            rendered["STOCKWATCH_HTTP_PORT"] = self.http_port
        base = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")}
        return {**base, **rendered, "PYTHONPATH": str(ROOT)}

    def command(self, name: str) -> list[str]:
        mounts = self.mounts(name)
        return [*CLI, *(self._local(arg, mounts) for arg in service_command(self.services[name]))]

    def healthcheck(self, name: str) -> list[str]:
        """The service's healthcheck command, run locally (``stockwatch`` -> the CLI, ports mapped)."""
        test = self.services[name]["healthcheck"]["test"]
        assert test[0] == "CMD", test
        args = [a.replace(":9400/", f":{self.http_port}/") for a in test[1:]]
        if args[0] == "stockwatch":
            return [*CLI, *args[1:]]
        assert args[0] == "python", args
        return [sys.executable, *args[1:]]


@pytest.fixture
def stack(
    tmp_path: Path, kafka_bootstrap: str, mongo_uri: str, mongo_db: Any, unique_name: Callable[[str], str]
) -> Stack:
    return Stack(tmp_path, kafka_bootstrap, mongo_uri, mongo_db.name, unique_name)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def run_once(stack: Stack, name: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        stack.command(name),
        check=False,
        env=stack.env(name),
        cwd=stack.tmp,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}: {done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done


def test_seed_loads_the_example_inventory_once(stack: Stack, mongo_db: Any) -> None:
    first = orjson.loads(run_once(stack, "seed").stdout)
    lines = (ROOT / "examples/items.jsonl").read_bytes().splitlines()
    assert (first["inserted"], first["replaced"], first["rejected"]) == (len(lines), 0, 0)
    assert mongo_db[stack.env("seed")["STOCKWATCH_MONGO_COLLECTION"]].count_documents({}) == len(lines)
    again = orjson.loads(run_once(stack, "seed").stdout)  # `docker compose up` runs it every time
    assert (again["inserted"], again["replaced"]) == (0, len(lines))


def test_trainer_trains_from_the_data_directory(stack: Stack) -> None:
    run_once(stack, "trainer")
    models = stack.mounts("trainer")["/models"]
    assert (models / "CURRENT").is_file() or any(models.iterdir()), "no model written"


def _check_alive(procs: dict[str, subprocess.Popen[bytes]], logs: dict[str, Path]) -> None:
    for name, proc in procs.items():
        text = logs[name].read_text(errors="replace")
        assert proc.poll() is None, f"{name} exited {proc.returncode}: {text[-2000:]}"
        assert "Traceback" not in text, f"{name}: {text[-2000:]}"


def test_worker_and_consumer_come_up_ready_on_the_seeded_inventory(
    stack: Stack, started: list[subprocess.Popen[bytes]]
) -> None:
    """`docker compose up`: seed, then the worker trains a first model and the consumer loads it."""
    run_once(stack, "seed")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    for name in ("retrain-worker", "consumer"):
        logs[name] = stack.tmp / f"{name}.log"
        with logs[name].open("wb") as log:
            procs[name] = subprocess.Popen(
                stack.command(name), env=stack.env(name), cwd=stack.tmp, stdout=log, stderr=subprocess.STDOUT
            )
        started.append(procs[name])

    ready: dict[str, bool] = {}
    deadline = time.monotonic() + 150
    while len(ready) < 2 and time.monotonic() < deadline:
        _check_alive(procs, logs)
        for name in procs:
            if name in ready:
                continue
            check = subprocess.run(
                stack.healthcheck(name),
                check=False,
                env=stack.env(name),
                cwd=stack.tmp,
                capture_output=True,
                timeout=60,
            )
            if check.returncode == 0:
                ready[name] = True
        time.sleep(1)
    _check_alive(procs, logs)
    late = {name: logs[name].read_text(errors="replace")[-3000:] for name in set(procs) - set(ready)}
    assert not late, f"not ready in time: {late}"
    assert any((stack.mounts("consumer")["/models"]).iterdir()), "the worker published no model"

    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    for name, proc in procs.items():
        assert proc.wait(60) == 0, f"{name}: {logs[name].read_text()[-2000:]}"
        assert "Traceback" not in logs[name].read_text(errors="replace")
