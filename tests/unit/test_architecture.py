"""The layering the design relies on: a pure detection core, one adapter per external client."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def _importers(package: str, client: str) -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for path in (ROOT / package).rglob("*.py")
        if client in _imported_roots(path)
    }


def test_detection_does_no_network_io() -> None:
    for client in ("kafka", "pymongo", "socket", "urllib", "http", "requests", "consumer"):
        assert _importers("detection", client) == set(), client


def test_only_the_kafka_adapter_imports_kafka_python() -> None:
    importers = _importers("consumer", "kafka")
    assert importers, "the Kafka adapter must exist"
    assert all(name.startswith("consumer/kafka_io/") for name in importers), importers


def test_only_the_mongo_adapter_imports_pymongo() -> None:
    assert _importers("consumer", "pymongo") == {"consumer/mongo_io.py"}


def test_only_the_confluent_adapter_imports_confluent_kafka() -> None:
    importers = _importers("consumer", "confluent_kafka")
    assert importers, "the optional librdkafka transport must exist"
    assert all(name.startswith("consumer/confluent_io/") for name in importers), importers
