"""docker-compose.yml can not run here (no Docker engine): render it as compose would and check it.

Rendering (interpolation included) is :mod:`tests.unit.deploy.compose`; the schema is the Compose
Specification's own (tests/data/compose-spec.json). tests/integration/test_compose_services.py
runs the rendered commands against the local stack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import validators

from config import Settings, load_settings
from config.kafka import FETCH_HEADROOM_BYTES, PRODUCER_MAX_REQUEST_BYTES
from detection import parse_item
from examples.make_items import items_jsonl
from tests.unit.deploy.compose import (
    InterpolationError,
    interpolate,
    load_compose,
    service_command,
    service_env,
)

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
KEYS = {"STOCKWATCH_CONTROL_KEY": "c" * 43, "STOCKWATCH_MODEL_SIGNING_KEY": "s" * 43}
STOCKWATCH_SERVICES = ("seed", "trainer", "consumer", "retrain-worker")


def _compose() -> dict[str, Any]:
    return load_compose(COMPOSE, KEYS)


def _env(name: str) -> dict[str, str]:
    return service_env(_compose()["services"][name], KEYS)


# ---------------------------------------------------------------------------- interpolation


@pytest.mark.parametrize(
    ("text", "env", "want"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("$A/$B", {"A": "x"}, "x/"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A-d}", {"A": ""}, ""),
        ("${A-d}", {}, "d"),
        ("${A:-${B:-deep}}", {}, "deep"),
        ("${A:+alt}", {"A": "x"}, "alt"),
        ("${A:+alt}", {"A": ""}, ""),
        ("${A+alt}", {"A": ""}, "alt"),
        ("$${A} costs $$5", {"A": "x"}, "${A} costs $5"),
        ("${A:?need A}", {"A": "x"}, "x"),
        ("plain $ sign", {}, "plain $ sign"),
    ],
)
def test_interpolation_follows_the_compose_spec(text: str, env: dict[str, str], want: str) -> None:
    assert interpolate(text, env) == want


@pytest.mark.parametrize(("text", "env"), [("${A:?need A}", {"A": ""}), ("${A?need A}", {})])
def test_required_variables(text: str, env: dict[str, str]) -> None:
    with pytest.raises(InterpolationError, match="required variable A is missing a value: need A"):
        interpolate(text, env)


def test_without_keys_compose_refuses_in_one_line_saying_how_to_make_them() -> None:
    for missing in KEYS:
        env = {k: v for k, v in KEYS.items() if k != missing}
        with pytest.raises(InterpolationError) as refused:
            load_compose(COMPOSE, env)
        assert refused.value.name == missing
        message = str(refused.value)
        assert "\n" not in message and "stockwatch keygen" in message and ".env" in message


# ---------------------------------------------------------------------------- the file as compose sees it


def test_the_rendered_file_is_valid_against_the_compose_schema() -> None:
    schema = json.loads((ROOT / "tests/data/compose-spec.json").read_text())
    validator = validators.validator_for(schema)(schema)
    rendered = _compose()
    errors = sorted(validator.iter_errors(rendered), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
    # the spec's per-service constraint (not referenced from the root): an image or a build
    constraint = validators.validator_for(schema)(schema["definitions"]["constraints"]["service"])
    for name, service in rendered["services"].items():
        assert constraint.is_valid(service), name


def test_the_schema_catches_mistakes() -> None:
    """The validation above can fail: a misspelt key and a wrong type are refused."""
    schema = json.loads((ROOT / "tests/data/compose-spec.json").read_text())
    validator = validators.validator_for(schema)(schema)
    broken = _compose()
    broken["services"]["consumer"]["helthcheck"] = {}
    broken["services"]["kafka"]["ports"] = "9094:9094"
    assert len(list(validator.iter_errors(broken))) >= 2


def test_services_and_official_images() -> None:
    services = _compose()["services"]
    assert {"kafka", "mongo", "seed", "consumer", "retrain-worker"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["mongo"]["image"].startswith("mongo:")
    for name in ("kafka", "mongo", "consumer", "retrain-worker"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_kafka_listeners_serve_containers_and_the_host() -> None:
    kafka = _compose()["services"]["kafka"]
    env = {k: str(v) for k, v in kafka["environment"].items()}
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) == set(protocols) and set(advertised) <= set(listeners)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    # containers: the address the StockWatch services use is an advertised listener
    internal = _env("consumer")["STOCKWATCH_KAFKA_BOOTSTRAP"]
    assert internal in advertised.values() and internal.startswith("kafka:")
    # the host: the published port is a listener that advertises localhost on that same port
    (published,) = kafka["ports"]
    host_port, container_port = published.split(":")
    (host_name,) = [n for n, a in advertised.items() if a.startswith("localhost:")]
    assert advertised[host_name] == f"localhost:{host_port}"
    assert listeners[host_name] == f":{container_port}"
    assert all(not p.endswith(f":{internal.split(':')[1]}") for p in kafka["ports"])


def test_kafka_keeps_its_data_in_a_named_volume() -> None:
    compose = _compose()
    kafka = compose["services"]["kafka"]
    (volume,) = kafka["volumes"]
    name, path = volume.split(":")
    assert name in compose["volumes"] and path == kafka["environment"]["KAFKA_LOG_DIRS"]


def test_broker_message_size_fits_what_stockwatch_sends() -> None:
    env = _compose()["services"]["kafka"]["environment"]
    message_max, replica_fetch = (
        int(env["KAFKA_MESSAGE_MAX_BYTES"]),
        int(env["KAFKA_REPLICA_FETCH_MAX_BYTES"]),
    )
    max_message = int(_env("consumer")["STOCKWATCH_MAX_MESSAGE_BYTES"])
    kafka = Settings(max_message_bytes=max_message).kafka
    assert message_max == 2 * max_message  # the comment in the file says so
    assert message_max >= max_message + FETCH_HEADROOM_BYTES  # a dead letter: the record plus headers
    assert replica_fetch >= message_max
    assert message_max <= PRODUCER_MAX_REQUEST_BYTES == kafka.producer_max_request_bytes
    assert message_max <= kafka.partition_fetch_bytes  # a consumer can fetch the largest batch


def _bytes(size: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(size[:-1]) * units[size[-1].lower()] if size[-1].lower() in units else int(size)


def test_long_running_services_have_a_memory_limit_above_their_bounded_peak() -> None:
    """An OOM kill restarts one container; the decompression cap keeps a bomb well below the limit."""
    services = _compose()["services"]
    cap = Settings().kafka.decompressed_batch_cap
    for name in ("consumer", "retrain-worker", "trainer"):
        limit = _bytes(str(services[name]["mem_limit"]))
        assert limit >= 512 * (1 << 20) + 4 * cap, name  # ~300 MB in use plus a capped batch, twice over
    assert services["consumer"]["restart"] == services["retrain-worker"]["restart"] == "unless-stopped"


def test_stockwatch_env_names_are_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every service's rendered environment loads as settings, exactly as the service would."""
    for name in STOCKWATCH_SERVICES:
        env = _env(name)
        for key in list(os.environ):
            if key.startswith("STOCKWATCH_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load_settings()  # unknown variables and bad values would raise here
        assert settings.kafka_bootstrap == "kafka:9092" and settings.model_dir == Path("/models")


def test_consumer_health_means_ready_and_is_reachable() -> None:
    consumer = _compose()["services"]["consumer"]
    env = _env("consumer")
    assert env["STOCKWATCH_HTTP_HOST"] == "0.0.0.0"
    test = " ".join(consumer["healthcheck"]["test"])
    assert f"127.0.0.1:{env['STOCKWATCH_HTTP_PORT']}/readyz" in test
    assert f"{env['STOCKWATCH_HTTP_PORT']}:{env['STOCKWATCH_HTTP_PORT']}" in consumer["ports"]


def test_seed_runs_once_before_the_worker_on_the_shipped_example() -> None:
    services = _compose()["services"]
    seed = services["seed"]
    assert seed.get("restart") == "no"
    assert services["retrain-worker"]["depends_on"]["seed"] == {"condition": "service_completed_successfully"}
    command = service_command(seed)
    assert command[0] == "seed"
    items = command[command.index("--items") + 1]
    mounts = dict(reversed(v.split(":")[:2]) for v in seed["volumes"])
    mount = next(target for target in mounts if items.startswith(target + "/"))
    local = ROOT / mounts[mount] / items.removeprefix(mount + "/")
    assert local.is_file(), local


def test_the_example_items_are_what_the_generator_makes_and_all_valid() -> None:
    shipped = (ROOT / "examples/items.jsonl").read_bytes()
    assert shipped == items_jsonl()  # regenerate with `python -m examples.make_items`
    lines = shipped.splitlines()
    assert 100 <= len(lines) <= 1000
    ids = [parse_item(orjson.loads(line)).item_id for line in lines]
    assert len(set(ids)) == len(ids)


def test_services_share_the_model_volume() -> None:
    services = _compose()["services"]
    model_dirs = {
        name: {v for v in services[name]["volumes"] if v.endswith(":/models")}
        for name in ("consumer", "retrain-worker", "trainer")
    }
    assert all(dirs == {"models:/models"} for dirs in model_dirs.values()), model_dirs
    assert "models" in _compose()["volumes"]


def test_the_image_entrypoint_is_the_cli() -> None:
    """The services' commands are `stockwatch` sub-commands (the integration test runs them so)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["stockwatch"]' in dockerfile
    for name in STOCKWATCH_SERVICES:
        assert service_command(_compose()["services"][name])[0] in {
            "seed",
            "train",
            "consume",
            "retrain-worker",
        }


def test_the_image_ships_numbas_kernel_cache_where_the_services_look() -> None:
    """The build warms the kernels as the runtime user into the runtime NUMBA_CACHE_DIR, after the
    package is installed (numba keys its cache by the installed files), and no service hides it."""
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    warm = lines.index("RUN python -m detection.warmup")
    install = next(i for i, line in enumerate(lines) if line.startswith("RUN pip install"))
    user = lines.index("USER stockwatch")
    cache = next(i for i, line in enumerate(lines) if line.startswith("NUMBA_CACHE_DIR="))
    assert install < user < warm and cache < warm
    assert not any(line.startswith(("COPY", "ADD")) for line in lines[install:])  # sources fixed
    for name in STOCKWATCH_SERVICES:
        service = _compose()["services"][name]
        assert "NUMBA_CACHE_DIR" not in str(service.get("environment", ""))
        assert not any(":/tmp" in str(v) for v in service.get("volumes", []) + service.get("tmpfs", []))
