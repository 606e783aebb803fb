"""Hostile input on the control and status topics, on the real broker (issue 13, defects 1 and 6)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from consumer.adapters.kafka import ControlSource, JsonPublisher, StatusListener
from consumer.cli import main
from consumer.wire.control import MAX_COMMAND_BYTES, message_is_signed, new_command, sign_message
from tests.integration.retrain_support import KEY, Status, publish_model, running_worker, settings_factory

pytestmark = pytest.mark.integration
__all__ = ["settings_factory"]  # the fixture, re-exported for pytest

OTHER_KEY = b"not-the-control-key-0123456789abcdef"


def deep_command(command_id: str, depth: int = 300) -> bytes:
    """The command of the issue: args nested ``depth`` levels, any signature (orjson writes only 254)."""
    head = f'{{"command":"status","command_id":"{command_id}","issued_at":"2026-11-25T18:00:00Z","args":'
    return head.encode() + b'{"a":' * depth + b"1" + b"}" * depth + b',"signature":"00"}'


def done(command_id: str) -> Callable[[list[dict[str, Any]]], bool]:
    """A ``Status.wait`` predicate: ``command_id`` was acknowledged as done."""

    def seen_done(seen: list[dict[str, Any]]) -> bool:
        return any(m.get("command_id") == command_id and m.get("status") == "done" for m in seen)

    return seen_done


def test_a_poison_command_is_rejected_once_and_the_worker_keeps_serving(
    settings_factory: Any, mongo_db: Any, unique_name: Any
) -> None:
    settings = settings_factory()
    publish_model(settings)  # no start-up retrain
    deep_id = unique_name("deep")
    big = new_command("status", KEY.encode(), args={"pad": "x" * MAX_COMMAND_BYTES})
    hostile = [deep_command(deep_id), b"\xff\xfe{\x00", big.to_json(), b"[" * 100_000]
    first, second = new_command("status", KEY.encode()), new_command("status", KEY.encode())
    status = Status(settings)
    publisher = JsonPublisher(settings.kafka_bootstrap)
    try:
        with running_worker(settings):
            records = [(None, value) for value in hostile] + [(None, first.to_json())]
            publisher.publish_bytes(settings.control_topic, records)
            status.wait(done(first.command_id))
        with running_worker(settings):  # a restart in the same group: the poison is not read again
            publisher.publish_bytes(settings.control_topic, [(None, second.to_json())])
            status.wait(done(second.command_id))
            time.sleep(1.0)  # room for a (wrong) second rejection to arrive
            status.seen += status.tail.poll(0.5)
    finally:
        publisher.close()
        status.close()
    rejected = [m for m in status.acks() if m["status"] == "rejected"]
    assert len(rejected) == len(hostile)  # each once: nothing was re-read after the restart
    by_id = {m["command_id"]: m["reason"] for m in rejected}
    assert "deeper than 8" in by_id[deep_id]
    assert "exceeds" in by_id[big.command_id]  # the ack of a too-big signed command carries its id
    assert all(message_is_signed(m, KEY.encode()) for m in status.seen)


def test_ctl_ignores_forged_acknowledgements_and_times_out(
    settings_factory: Any, unique_name: Any, capsys: Any
) -> None:
    """No worker runs; a forger who reads the control topic answers every command with "promoted"."""
    settings = settings_factory()
    forged = threading.Event()
    stop = threading.Event()

    def forger() -> None:
        source = ControlSource(
            settings.kafka_bootstrap, settings.control_topic, group_id=unique_name("mallory")
        )
        publisher = JsonPublisher(settings.kafka_bootstrap)
        try:
            while not stop.is_set() and not forged.is_set():
                for _, _, value in source.poll(0.2):
                    cid = orjson.loads(value or b"{}").get("command_id")
                    ack = {
                        "type": "command_ack",
                        "command_id": cid,
                        "command": "retrain",
                        "worker": "mallory",
                    }
                    promoted = ack | {"status": "done", "result": {"status": "promoted", "version": "evil"}}
                    messages = [
                        promoted,  # unsigned
                        sign_message(promoted, OTHER_KEY),  # signed with a key that is not ours
                        sign_message(
                            ack | {"status": "rejected", "digest": "0" * 64}, KEY.encode()
                        ),  # not ours
                    ]
                    publisher.publish(settings.status_topic, messages)
                    forged.set()
        finally:
            publisher.close()
            source.close()

    thread = threading.Thread(target=forger, daemon=True)
    thread.start()
    try:
        capsys.readouterr()
        code = main(["ctl", "retrain", "--timeout", "8"])
    finally:
        stop.set()
        thread.join(30)
    out, err = capsys.readouterr()
    assert forged.is_set(), "the forger never saw the command"
    assert code == 3
    assert "promoted" not in out and "evil" not in out
    assert "2 acknowledgement(s) were not signed" in err


def test_the_consumer_hears_only_signed_model_announcements(settings_factory: Any) -> None:
    settings = settings_factory()
    key = settings.control.key.get_secret_value().encode() if settings.control.key else None
    listener = StatusListener(settings.kafka, key=key)
    publisher = JsonPublisher(settings.kafka_bootstrap)
    try:
        deadline = time.monotonic() + 30
        while not listener._assigned:  # it reads from the end: assign before anything is published
            assert time.monotonic() < deadline, "the listener never got the status topic's partitions"
            listener.poll(0.2)
        announcement = {"type": "model_published", "version": "20260101T000000Z-00000001"}
        signed = sign_message(announcement, KEY.encode())
        publisher.publish(
            settings.status_topic,
            [
                announcement,
                sign_message(announcement, OTHER_KEY),
                sign_message({"type": "command_ack"}, KEY.encode()),
                signed,
            ],
        )
        heard: list[dict[str, Any]] = []
        while not heard:
            assert time.monotonic() < deadline + 30, "the signed announcement never arrived"
            heard += listener.poll(0.5)
    finally:
        publisher.close()
        listener.close()
    assert heard == [signed]
    assert listener.forged == 2
