"""Shared fixtures: real servers for integration tests, fresh names for every test.

Where the servers come from, in order:
1. ``STOCKWATCH_KAFKA_BOOTSTRAP`` / ``STOCKWATCH_MONGO_URI`` when set (``make test`` sets them
   to the local stack, which it starts);
2. otherwise, when a Docker engine answers, testcontainers starts Kafka and MongoDB;
3. otherwise the local stack's defaults, ``127.0.0.1:9092`` and ``mongodb://127.0.0.1:27017``.

A server that cannot be reached makes the test FAIL with what to do — integration tests never
skip, so a missing broker can not pass unnoticed in CI.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from pymongo import MongoClient

DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_MONGO = "mongodb://127.0.0.1:27017"
REACH_TIMEOUT_S = 30.0

log = logging.getLogger(__name__)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _docker_answers() -> bool:
    try:
        import docker  # shipped with testcontainers

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # no engine, no socket, no permission: all mean "no Docker here"
        return False


def _wait(what: str, check: Callable[[], None], hint: str) -> None:
    deadline = time.monotonic() + REACH_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            check()
            return
        except Exception as exc:  # report the last failure if it never answers
            last = exc
            time.sleep(0.5)
    pytest.fail(f"{what} is not reachable ({last!r}). {hint}", pytrace=False)


@pytest.fixture(scope="session")
def _containers() -> Iterator[dict[str, str]]:
    """Start Kafka and MongoDB with testcontainers, only when no address is given and Docker answers."""
    given = {
        k: os.environ[k] for k in ("STOCKWATCH_KAFKA_BOOTSTRAP", "STOCKWATCH_MONGO_URI") if k in os.environ
    }
    if len(given) == 2 or not _docker_answers():
        yield given
        return
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer

    started: list[Any] = []
    try:
        out = dict(given)
        if "STOCKWATCH_KAFKA_BOOTSTRAP" not in out:
            kafka = KafkaContainer().with_kraft()
            kafka.start()
            started.append(kafka)
            out["STOCKWATCH_KAFKA_BOOTSTRAP"] = kafka.get_bootstrap_server()
        if "STOCKWATCH_MONGO_URI" not in out:
            mongo = MongoDbContainer("mongo:7")
            mongo.start()
            started.append(mongo)
            out["STOCKWATCH_MONGO_URI"] = mongo.get_connection_url()
        yield out
    finally:
        for container in reversed(started):
            container.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(_containers: dict[str, str]) -> str:
    bootstrap = _containers.get("STOCKWATCH_KAFKA_BOOTSTRAP", DEFAULT_KAFKA)

    def check() -> None:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            admin.list_topics()
        finally:
            admin.close()

    _wait(f"Kafka at {bootstrap}", check, "Start the local stack with `make stack-up` (or run `make test`).")
    return bootstrap


@pytest.fixture(scope="session")
def mongo_uri(_containers: dict[str, str]) -> str:
    uri = _containers.get("STOCKWATCH_MONGO_URI", DEFAULT_MONGO)

    def check() -> None:
        client: Any = MongoClient(uri, serverSelectionTimeoutMS=3000)
        try:
            client.admin.command("ping")
        finally:
            client.close()

    _wait(f"MongoDB at {uri}", check, "Start the local stack with `make stack-up` (or run `make test`).")
    return uri


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """``unique_name("group")`` → a name no other test uses."""
    return unique


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """``topic_factory(partitions=1)`` creates a fresh topic on the broker and returns its name.

    The topics are deleted after the test.
    """
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10000)
    created: list[str] = []

    def make(prefix: str = "t", *, partitions: int = 1) -> str:
        name = unique(f"test-{prefix}")
        admin.create_topics([NewTopic(name=name, num_partitions=partitions, replication_factor=1)])
        deadline = time.monotonic() + 10
        while name not in admin.list_topics():
            if time.monotonic() > deadline:
                pytest.fail(f"topic {name} did not appear on the broker")
            time.sleep(0.05)
        created.append(name)
        return name

    yield make
    try:
        if created:
            admin.delete_topics(created)
    except Exception as exc:  # a leftover test topic is harmless; say so and move on
        log.warning("could not delete test topics %s: %r", created, exc)
    finally:
        admin.close()


@pytest.fixture
def mongo_db(mongo_uri: str) -> Iterator[Any]:
    """A fresh database (pymongo ``Database``) dropped after the test."""
    client: Any = MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    db = client[unique("sw").replace("-", "_")]
    try:
        yield db
    finally:
        client.drop_database(db.name)
        client.close()
