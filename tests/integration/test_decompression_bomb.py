"""A compressed decompression bomb on a topic is skipped unread, never inflated (real broker).

A value of 8 MB of one repeated byte, produced gzip-compressed, is a batch of a few KB that the
broker accepts. With ``max_decompressed_batch_bytes`` at 2 MiB, `stockwatch consume`
(kafka-python) must not inflate it: it dead-letters one reduced record naming the batch's
offsets with reason ``decompression_bomb``, scores every other record of both partitions and
commits past the bomb — in both delivery modes. The retrain worker's control source skips it the
same way and hands on the record after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from config.settings import Settings
from consumer.adapters.kafka import ControlSource
from consumer.scoring.wiring import build_service
from tests.integration.running import Running
from tests.integration.test_consume import committed, decided, publish_model, read_topic, updates, wait_for
from tests.integration.test_poison import produce_to
from tests.schemas import dlq_headers, validate

pytestmark = pytest.mark.integration

BOMB_BYTES = 8 * 1024 * 1024
CAP = 2 * 1024 * 1024
BEFORE, AFTER, OTHER = 10, 10, 12  # records before / after the bomb in partition 0, in partition 1


def bomb_value() -> bytes:
    return b'{"item_id": "SKU-BOMB", "note": "' + b"A" * BOMB_BYTES + b'"}'


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_a_gzip_bomb_is_dead_lettered_unread_and_everything_else_is_scored(
    delivery: str,
    started: list[Running],
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings(
        kafka_client="kafka-python",
        delivery=delivery,
        max_decompressed_batch_bytes=CAP,
    )
    publish_model(Path(settings.model_dir))
    bootstrap, topic, group = settings.kafka_bootstrap, settings.input_topic, settings.group_id
    objs = updates(BEFORE + AFTER + OTHER)
    dump = [orjson.dumps(o) for o in objs]
    produce_to(bootstrap, topic, 0, dump[:BEFORE])
    produce_to(bootstrap, topic, 0, [bomb_value()], compression_type="gzip", max_request_size=2 * BOMB_BYTES)
    produce_to(bootstrap, topic, 0, dump[BEFORE : BEFORE + AFTER])
    produce_to(bootstrap, topic, 1, dump[BEFORE + AFTER :])

    running = Running(build_service(settings), timeout=150)
    started.append(running)
    everything = {0: BEFORE + 1 + AFTER, 1: OTHER}
    wait_for(
        "both partitions committed past the bomb",
        lambda: all(committed(bootstrap, group, topic, p) == n for p, n in everything.items()),
        timeout=90,
        every=0.5,
        state=lambda: {p: committed(bootstrap, group, topic, p) for p in (0, 1)},
    )
    stats = running.stop()
    eos = delivery == "exactly-once"

    dlq = read_topic(bootstrap, settings.dlq_topic, expect=1, committed_only=eos)
    assert len(dlq) == 1, [dict(r.headers) for r in dlq]
    validate("dlq-headers", dlq_headers(dlq[0].headers))
    headers = dict(dlq[0].headers)
    assert headers["dlq.reason"] == b"decompression_bomb"
    assert headers["dlq.source.topic"] == topic.encode()
    assert headers["dlq.source.partition"] == b"0"
    assert headers["dlq.source.first_offset"] == headers["dlq.source.offset"] == str(BEFORE).encode()
    assert f"max_decompressed_batch_bytes={CAP}".encode() in headers["dlq.error"]
    assert dlq[0].value == b"" and dlq[0].key is None  # nothing of the bomb was inflated
    registry = running.service.metrics.registry
    assert registry.get_sample_value("stockwatch_dlq_total", {"reason": "decompression_bomb"}) == 1

    expect = BEFORE + AFTER + OTHER
    scored = decided(bootstrap, settings.decisions_topic or "", expect=expect, committed_only=eos)
    want = {(0, o) for o in range(BEFORE)} | {(0, o) for o in range(BEFORE + 1, BEFORE + 1 + AFTER)}
    assert scored == want | {(1, o) for o in range(OTHER)}
    assert stats.parked == 0


def test_the_control_source_skips_a_bomb_and_hands_on_the_next_command(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings(max_decompressed_batch_bytes=CAP)
    control = topic_factory("control")
    produce_to(
        kafka_bootstrap, control, 0, [bomb_value()], compression_type="gzip", max_request_size=2 * BOMB_BYTES
    )
    produce_to(kafka_bootstrap, control, 0, [b'{"command": "status"}'])
    source = ControlSource(settings.kafka, control, group_id=unique_name("ctl"))
    try:
        got: list[tuple[int, int, bytes | None]] = []
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            got += source.poll(0.5)
        assert got == [(0, 0, None), (0, 1, b'{"command": "status"}')]  # the bomb: a tombstone
    finally:
        source.close()


def test_one_poll_inflates_at_most_the_cap_and_every_batch_is_read_by_a_later_poll(
    started: list[Running],
    monkeypatch: pytest.MonkeyPatch,
    service_settings: Callable[..., Settings],
) -> None:
    """gzip batches of one value of ~0.6 of the cap each: a poll holds one of them (two would pass the
    cap), the rest is fetched again by later polls; each is dead-lettered as oversize, nothing lost."""
    settings = service_settings(max_decompressed_batch_bytes=CAP)
    publish_model(Path(settings.model_dir))
    bootstrap, topic, group = settings.kafka_bootstrap, settings.input_topic, settings.group_id
    big = [b'{"item_id": "SKU-BIG-%d", "note": "%s"}' % (i, b"B" * (CAP * 6 // 10)) for i in range(6)]
    small = [orjson.dumps(o) for o in updates(6)]
    for i, value in enumerate(big):  # one batch each: small, big, small, big, ...
        produce_to(bootstrap, topic, 0, [small[i]], compression_type="gzip")
        produce_to(bootstrap, topic, 0, [value], compression_type="gzip", max_request_size=2 * CAP)
    service = build_service(settings)
    polls: list[int] = []  # bytes of values each non-empty poll returned
    source_poll = service.source.poll

    def recording(timeout_ms: int, max_records: int) -> dict[tuple[str, int], list[Any]]:
        polled = source_poll(timeout_ms, max_records)
        if polled:
            polls.append(sum(len(r.value or b"") for records in polled.values() for r in records))
        return polled

    monkeypatch.setattr(service.source, "poll", recording)
    started.append(running := Running(service, timeout=150))
    total = len(big) + len(small)
    wait_for(
        "every record committed",
        lambda: committed(bootstrap, group, topic, 0) == total,
        timeout=90,
        every=0.5,
        state=lambda: committed(bootstrap, group, topic, 0),
    )
    running.stop()

    assert max(polls) <= CAP and len(polls) >= len(big)  # never two big values in one poll
    dlq = read_topic(bootstrap, settings.dlq_topic, expect=len(big))
    reasons = {int(dict(r.headers)["dlq.source.offset"]): dict(r.headers)["dlq.reason"] for r in dlq}
    assert reasons == {o: b"oversize" for o in range(1, total, 2)}  # every big one, once
    decisions = read_topic(bootstrap, settings.decisions_topic or "", expect=len(small))
    assert sorted(orjson.loads(r.value)["source"]["offset"] for r in decisions) == list(range(0, total, 2))
