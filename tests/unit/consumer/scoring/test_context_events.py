"""Both scoring paths put the input's context on anomaly events only: attributes, headers, links."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.ports import OutputRecord
from consumer.scoring.batch import BatchConfig, process_batch
from consumer.scoring.change_batch import ChangeContext, process_change_batch
from consumer.scoring.state.seeds import SnapshotSeeds
from consumer.scoring.state.store import StateStore
from consumer.wire.context import MANIFEST_FILE, REPORT_FILE, EventContext, ModelLinks
from detection import ChangeDetector, parse_updates, train_detector
from tests.fakes import FakeModel, MemoryChangelog, Rec, item
from tests.schemas import validate
from tests.unit.consumer.scoring.state.stream import snapshot_docs

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
HEADERS = [("traceparent", TRACEPARENT), ("authorization", b"Bearer x"), ("correlation-id", b"c" * 300)]
EXTRA = {"warehouse_id": "WH-7", "supplier": {"name": "acme", "id": 12}, "note": "n" * 200}


def config(tmp_path: Path, version: str, *, decisions: bool = False) -> BatchConfig:
    (tmp_path / version).mkdir(exist_ok=True)
    (tmp_path / version / REPORT_FILE).write_bytes(b"png")
    (tmp_path / version / MANIFEST_FILE).write_text("{}")
    context = EventContext(header_max_bytes=256, max_fields=8, max_bytes=200, links=ModelLinks(tmp_path))
    return BatchConfig(
        "anomalies", "dlq", decisions_topic="decisions" if decisions else None, context=context
    )


def rec(offset: int, obj: dict[str, Any]) -> Rec:
    return Rec("in", 0, offset, 1_000 + offset, obj["item_id"].encode(), orjson.dumps(obj), HEADERS)


def on(topic: str, outputs: list[OutputRecord]) -> list[OutputRecord]:
    return [o for o in outputs if o.topic == topic]


def check_anomaly(out: OutputRecord, tmp_path: Path, version: str, **more: Any) -> dict[str, Any]:
    event = validate("anomaly-event", orjson.loads(out.value or b""))
    kept = {"warehouse_id": "WH-7", "supplier": {"name": "acme", "id": 12}}
    assert event["item"]["attributes"] == kept | more
    assert event["item"]["attributes_truncated"] is True  # "note" is over the 200 bytes
    assert out.headers == [("traceparent", TRACEPARENT)]  # named, within 256 bytes
    directory = (tmp_path / version).resolve()
    assert event["links"] == {"model": directory.as_uri() + "/", "report": (directory / REPORT_FILE).as_uri()}
    return event


def test_seed_path_anomalies_carry_attributes_headers_and_links_and_decisions_do_not(tmp_path: Path) -> None:
    model = FakeModel()
    cfg = config(tmp_path, model.version, decisions=True)
    records = [rec(0, item(0) | EXTRA), rec(1, item(1, stock=5000) | EXTRA | {"category": "tv"})]
    result = process_batch(records, model, cfg, now=NOW)
    (anomaly,) = on("anomalies", result.outputs)
    event = check_anomaly(anomaly, tmp_path, model.version, category="tv")  # the seed reads no group
    assert result.anomalies == [event]
    for decision in on("decisions", result.outputs):
        assert decision.headers == []
        assert "links" not in validate("decision-event", orjson.loads(decision.value or b""))


def test_a_seed_anomaly_without_context_has_empty_attributes_and_no_headers(tmp_path: Path) -> None:
    model = FakeModel()
    result = process_batch([rec(0, item(0, stock=5000)) ._replace(headers=None)], model,
                           config(tmp_path, model.version), now=NOW)  # fmt: skip
    (out,) = result.outputs
    event = validate("anomaly-event", orjson.loads(out.value or b""))
    assert (event["item"]["attributes"], event["item"]["attributes_truncated"], out.headers) == (
        {},
        False,
        [],
    )


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(snapshot_docs())[0]).with_version("20261201T000000Z-ctx00000")


def test_default_path_anomalies_carry_attributes_headers_and_links(
    tmp_path: Path, detector: ChangeDetector
) -> None:
    version = detector.version or ""
    doc = next(d for d in snapshot_docs() if d["category"] == "tv")
    known = {"item_id": doc["item_id"], "event_id": "u1", "occurred_at": 1_700_000_000.0, "category": "tv"}
    records = [
        rec(0, known | {"stock_quantity": doc["max_stock_level"] * 50} | EXTRA),  # a case-pack error
        rec(1, {"item_id": doc["item_id"], "stock_quantity": doc["stock_quantity"], "occurred_at": 1.0}),
    ]
    changelog = MemoryChangelog()
    ctx = ChangeContext(StateStore(changelog), changelog.topic, SnapshotSeeds(snapshot_docs()))
    ctx.prepare(detector, {("in", 0): 0}, lambda: None)
    result = process_change_batch(records, detector, ctx, config(tmp_path, version), now=NOW)
    anomalies = on("anomalies", result.outputs)
    assert [orjson.loads(o.value or b"")["source"]["offset"] for o in anomalies][:1] == [0]
    event = check_anomaly(anomalies[0], tmp_path, version)  # occurred_at, category: read, not attributes
    assert result.anomalies[0] == event
