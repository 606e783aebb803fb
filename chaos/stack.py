"""The suite's own Kafka + FerretDB, started with ``stack/stack.sh`` on ports of its own.

The suite kills these servers, so it never uses the shared stack (9092 / 27017): it runs one
instance under ``.stack/chaos`` (ports 39092 / 39093 / 27039 unless told otherwise) that reuses
the cached jars and FerretDB binary, and stops it at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ChaosStack:
    """One stack.sh instance: its directory and ports."""

    stack_dir: Path
    kafka_port: int = 39092
    controller_port: int = 39093
    sasl_port: int = 39094  # the stack's SASL_SSL listener: never the shared stack's 9094
    mongo_port: int = 27039

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("STOCKWATCH_CACHE_DIR", str(REPO / ".stack" / "cache"))
        env.setdefault("STOCKWATCH_PYTHON", sys.executable)
        env.update(
            {
                "STOCKWATCH_STACK_DIR": str(self.stack_dir),
                "STOCKWATCH_STACK_KAFKA_PORT": str(self.kafka_port),
                "STOCKWATCH_STACK_CONTROLLER_PORT": str(self.controller_port),
                "STOCKWATCH_STACK_SASL_PORT": str(self.sasl_port),
                "STOCKWATCH_STACK_MONGO_PORT": str(self.mongo_port),
                "STOCKWATCH_STACK_KAFKA_HEAP": env.get("STOCKWATCH_STACK_KAFKA_HEAP", "512m"),
            }
        )
        return env

    def run(self, action: str) -> float:
        """``stack.sh <action>`` on this instance; returns its wall time. Raises on failure."""
        began = time.monotonic()
        subprocess.run(["bash", str(REPO / "stack" / "stack.sh"), action], env=self._env(), check=True)
        return time.monotonic() - began

    def up(self) -> float:
        """Start from empty data (a leftover instance of this suite is stopped first)."""
        self.down()
        for sub in ("kafka", "ferretdb"):
            shutil.rmtree(self.stack_dir / sub, ignore_errors=True)
        return self.run("up")

    def down(self) -> None:
        subprocess.run(["bash", str(REPO / "stack" / "stack.sh"), "down"], env=self._env(), check=False)

    def kill_kafka(self) -> None:
        self.run("kill-kafka")

    def start_kafka(self) -> float:
        return self.run("start-kafka")

    def kill_mongo(self) -> None:
        self.run("kill-mongo")

    def start_mongo(self) -> float:
        return self.run("start-mongo")
