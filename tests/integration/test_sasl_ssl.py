"""Both transports through the local stack's SASL_SSL listener: round trips, consume, transactions.

The listener's address, user, password and CA come from the ``client.env`` that stack/stack.sh
writes (``$STOCKWATCH_STACK_DIR/kafka-sasl/client.env``, or ``STOCKWATCH_STACK_SASL_ENV``). A
missing file or a listener that does not answer FAILS the tests: `make stack-up` starts it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaAdminClient

from config.settings import Settings
from consumer.adapters.kafka import KafkaSource, TopicTail, ensure_topics, ensure_worker_topics, publish_raw
from consumer.ports import KafkaUnavailableError
from consumer.scoring.wiring import build_service
from tests.integration.test_consume import expected_anomalies, publish_model, updates

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TRANSPORTS = ["kafka-python", "confluent-kafka"]


def _env_file() -> Path:
    given = os.environ.get("STOCKWATCH_STACK_SASL_ENV")
    if given:
        return Path(given)
    return Path(os.environ.get("STOCKWATCH_STACK_DIR") or REPO / ".stack") / "kafka-sasl" / "client.env"


@pytest.fixture(scope="module")
def listener() -> dict[str, str]:
    """The STOCKWATCH_KAFKA_* settings of the SASL_SSL listener; fails if it does not answer."""
    path = _env_file()
    if not path.is_file():
        pytest.fail(
            f"no {path}: the stack's SASL_SSL listener is missing (run `make stack-up`)", pytrace=False
        )
    env = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    admin_kw = {
        "bootstrap_servers": env["STOCKWATCH_KAFKA_BOOTSTRAP"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": env["STOCKWATCH_KAFKA_SASL_MECHANISM"],
        "sasl_plain_username": env["STOCKWATCH_KAFKA_SASL_USERNAME"],
        "sasl_plain_password": env["STOCKWATCH_KAFKA_SASL_PASSWORD"],
        "ssl_cafile": env["STOCKWATCH_KAFKA_SSL_CAFILE"],
    }
    deadline, last = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        try:
            KafkaAdminClient(request_timeout_ms=5000, **admin_kw).close()
            return env
        except Exception as exc:  # not answering yet: report the last failure
            last = exc
            time.sleep(0.5)
    pytest.fail(f"the SASL_SSL listener {env['STOCKWATCH_KAFKA_BOOTSTRAP']} does not answer: {last!r}")


def sasl_settings(listener: dict[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {k.removeprefix("STOCKWATCH_").lower(): v for k, v in listener.items()}
    return Settings(**{**values, "http_port": 0, **overrides})


@pytest.fixture
def topics(listener: dict[str, str], unique_name: Callable[[str], str]) -> Iterator[Callable[[str], str]]:
    """``topics("in")`` creates a fresh topic through the SASL_SSL listener (the admin client too)."""
    kafka = sasl_settings(listener).kafka

    def make(prefix: str) -> str:
        name = unique_name(f"test-sasl-{prefix}")
        assert ensure_topics(kafka, [name]) == [name]
        return name

    yield make


def _transport_roundtrip(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Produce with the transport's producer config, read back with its group consumer."""
    kafka = settings.kafka
    if kafka.client == "confluent-kafka":
        from confluent_kafka import Producer

        from consumer.adapters.confluent import ConfluentSource
        from consumer.adapters.confluent.sinks import producer_config

        producer = Producer(producer_config(kafka.producer_config(client_id="sasl-test"), kafka))
        for key, value in records:
            producer.produce(topic, key=key, value=value)
        assert producer.flush(30) == 0
        source: Any = ConfluentSource(kafka)
    else:
        publish_raw(kafka, topic, records)
        source = KafkaSource(kafka)
    try:
        source.subscribe()
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < len(records) and time.monotonic() < deadline:
            got += [r.value for recs in source.poll(200, 500).values() for r in recs]
        return got
    finally:
        source.close()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_produce_consume_round_trip(
    listener: dict[str, str],
    topics: Callable[[str], str],
    unique_name: Callable[[str], str],
    transport: str,
    mechanism: str,
) -> None:
    settings = sasl_settings(
        listener, kafka_client=transport, kafka_sasl_mechanism=mechanism, input_topic=topics("rt"),
        group_id=unique_name("sasl-group"),
    )  # fmt: skip
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(40)]
    assert _transport_roundtrip(settings, settings.input_topic, records) == [v for _, v in records]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_wrong_password_is_refused(listener: dict[str, str], transport: str) -> None:
    if transport == "kafka-python":
        # kafka-python retries a refused login until its bootstrap timeout: shorten it through the
        # client-property pass-through (bootstrap.timeout.ms -> bootstrap_timeout_ms)
        settings = sasl_settings(
            listener,
            kafka_sasl_password="not-the-password",
            kafka_client_properties={"bootstrap.timeout.ms": 5000},
        )
        with pytest.raises(KafkaUnavailableError, match="cannot reach the broker"):
            ensure_worker_topics(settings.kafka, ["never-created-sasl-topic"])
        return
    from confluent_kafka import KafkaException, Producer

    from consumer.adapters.confluent.sinks import producer_config

    kafka = sasl_settings(listener, kafka_client=transport, kafka_sasl_password="not-the-password").kafka
    producer = Producer(producer_config(kafka.producer_config(client_id="sasl-test"), kafka))
    with pytest.raises(KafkaException):
        producer.list_topics(timeout=5)


@pytest.mark.parametrize(
    "argv",
    [
        ["ctl", "status", "--timeout", "10"],
        ["consume", "--timeout", "10"],
        ["feedback", "0123456789abcdef0123456789abcdef", "confirmed"],
        ["notify", "--webhook", "http://127.0.0.1:9/hook"],
    ],
)
def test_a_wrong_password_says_authentication_may_have_failed(
    listener: dict[str, str], tmp_path: Path, argv: list[str]
) -> None:
    (tmp_path / "empty.toml").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")}
    env |= listener | {"STOCKWATCH_KAFKA_SASL_PASSWORD": "not-the-password-4711", "PYTHONPATH": str(REPO)}
    env |= {"STOCKWATCH_CONFIG": str(tmp_path / "empty.toml"), "STOCKWATCH_KAFKA_BOOTSTRAP_TIMEOUT_S": "5",
            "STOCKWATCH_CONTROL_KEY": "sasl-wrong-password-control-key-0123456789",
            "STOCKWATCH_MODEL_DIR": str(tmp_path), "STOCKWATCH_HTTP_PORT": "0"}  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "consumer.cli", *argv], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert time.monotonic() - started < 25  # within the 5 s bootstrap timeout, not the clients' 30 s
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "not-the-password-4711" not in proc.stdout + proc.stderr
    user = f"STOCKWATCH_KAFKA_SASL_USERNAME ({listener['STOCKWATCH_KAFKA_SASL_USERNAME']}, "
    assert "authentication may have failed" in proc.stderr and user in proc.stderr


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_debug_logs_of_a_working_login_never_show_the_password(
    listener: dict[str, str], tmp_path: Path, unique_name: Callable[[str], str], transport: str
) -> None:
    """kafka-python logs its whole configuration at DEBUG, SASL password included."""
    (tmp_path / "empty.toml").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKWATCH_")}
    env |= listener | {"PYTHONPATH": str(REPO), "STOCKWATCH_CONFIG": str(tmp_path / "empty.toml"),
                       "STOCKWATCH_KAFKA_CLIENT": transport, "STOCKWATCH_MODEL_DIR": str(tmp_path),
                       "STOCKWATCH_HTTP_PORT": "0", "STOCKWATCH_INPUT_TOPIC": unique_name("debug-in"),
                       "STOCKWATCH_GROUP_ID": unique_name("debug-group")}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "consumer.cli", "consume", "--timeout", "8", "--log-level",
                           "DEBUG"], env=env, cwd=REPO, capture_output=True, text=True, timeout=90, check=False)  # fmt: skip
    password = listener["STOCKWATCH_KAFKA_SASL_PASSWORD"]
    assert "sasl_plain_password" in proc.stderr or transport != "kafka-python", "the library's config line"
    assert password not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_consume_publishes_anomalies_through_sasl_ssl(
    listener: dict[str, str],
    topics: Callable[[str], str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
    transport: str,
    delivery: str,
) -> None:
    settings = sasl_settings(
        listener,
        kafka_client=transport,
        delivery=delivery,
        input_topic=topics("in"),
        anomaly_topic=topics("anomalies"),
        dlq_topic=topics("dlq"),
        status_topic=topics("status"),
        group_id=unique_name("sasl-group"),
        model_dir=tmp_path / "models",
        session_timeout_ms=10_000,
        create_missing_topics=False,
    )
    publish_model(settings.model_dir)
    objs = updates(300)
    publish_raw(
        settings.kafka, settings.input_topic, [(o["item_id"].encode(), orjson.dumps(o)) for o in objs]
    )
    want = expected_anomalies(settings.model_dir, objs)
    assert want, "the planted anomalies must be flagged"

    service = build_service(settings)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(stats=service.run(max_events=300, timeout=90)))
    thread.start()
    thread.join(100)
    assert not thread.is_alive(), "the service did not finish"
    assert result["stats"].events_in == 300

    tail = TopicTail(settings.kafka, settings.anomaly_topic, read_committed=delivery == "exactly-once")
    try:
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while len(events) < len(want) and time.monotonic() < deadline:
            events += [orjson.loads(value) for _, value, _ in tail.poll(0.5)]
        events += [orjson.loads(value) for _, value, _ in tail.poll(1.0)]  # duplicates would show here
    finally:
        tail.close()
    assert sorted(e["source"]["offset"] for e in events) == sorted(want)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_default_detector_keeps_its_state_through_sasl_ssl(
    listener: dict[str, str], topics: Callable[[str], str], unique_name: Callable[[str], str], tmp_path: Path,
    transport: str,
) -> None:  # fmt: skip
    """The per-item state's changelog (created, written, read back) goes through the secured listener too."""
    from consumer.adapters.kafka.connect import client_kwargs
    from consumer.scoring.state.changelog import changelog_topic
    from detection import ModelStore, parse_updates, train_detector

    objs = updates(300)
    ModelStore(tmp_path / "models").publish(train_detector(parse_updates(objs[:200])[0]))
    group = unique_name("sasl-state")
    settings = sasl_settings(listener, kafka_client=transport, input_topic=topics("in"), anomaly_topic=topics("anomalies"),
                             dlq_topic=topics("dlq"), status_topic=topics("status"), group_id=group,
                             model_dir=tmp_path / "models", session_timeout_ms=10_000, state_seed="none",
                             create_missing_topics=False)  # fmt: skip
    publish_raw(
        settings.kafka, settings.input_topic, [(o["item_id"].encode(), orjson.dumps(o)) for o in objs]
    )
    for run in range(2):  # the second run restores the state the first one wrote
        service = build_service(settings)
        result: dict[str, Any] = {}
        thread = threading.Thread(
            target=lambda s=service, r=result: r.update(stats=s.run(max_events=150, timeout=90))
        )
        thread.start()
        thread.join(100)
        assert not thread.is_alive(), "the service did not finish"
        assert result["stats"].events_in == 150, run
    changelog = changelog_topic(
        settings.scoring.state_changelog_topic, group_id=group, input_topic=settings.input_topic
    )
    admin = KafkaAdminClient(**client_kwargs(settings.kafka, KafkaAdminClient, client_id="test-sasl-state"))
    try:
        assert changelog in admin.list_topics()
    finally:
        admin.delete_topics([changelog])
        admin.close()
