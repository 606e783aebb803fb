"""process_change_batch's outputs do not depend on which decoder read the batch.

A batch of plain update records is scanned from its bytes (``detection.update_scan``), any other
batch decoded by orjson and parsed by ``parse_updates``; the scan must be invisible downstream:
the same anomaly, decision and episode events byte for byte (attributes from the lazily decoded
objects, headers, groups, times, event ids), the same dead letters (missing_field, future_time)
and the same changelog records. Each batch is run twice from the same state, once with the scan
disabled, and the two results are compared whole.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import consumer.scoring.batch as batch_module
import consumer.scoring.update_decode as update_decode
from consumer.scoring.batch import BatchConfig, BatchResult
from consumer.scoring.change_batch import ChangeContext, process_change_batch
from consumer.scoring.episode_batch import EpisodeContext
from consumer.scoring.state.packed import PACK_PREFIX, is_pack
from consumer.scoring.state.seeds import SnapshotSeeds
from consumer.scoring.update_decode import LazyObjects
from consumer.wire.context import MANIFEST_FILE, REPORT_FILE, EventContext, ModelLinks
from detection import ChangeDetector, parse_updates, train_detector
from detection.update_scan import scan_updates
from tests.fakes import MemoryChangelog, Rec, foreground_store
from tests.unit.detection.test_detector import snapshot_docs

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
DOCS = snapshot_docs()  # sku-0 .. sku-299, with a category
TRACE = ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(DOCS)[0]).with_version("20261201T000000Z-scan0000")


def _config(tmp_path: Path, version: str, *, decisions: bool) -> BatchConfig:
    (tmp_path / version).mkdir(exist_ok=True)
    (tmp_path / version / REPORT_FILE).write_bytes(b"png")
    (tmp_path / version / MANIFEST_FILE).write_text("{}")
    context = EventContext(max_fields=4, max_bytes=300, links=ModelLinks(tmp_path))
    return BatchConfig(
        "anomalies", "dlq", decisions_topic="decisions" if decisions else None, context=context
    )


def _message(rng: np.random.Generator, k: int) -> dict[str, Any]:
    """A plain update (the scanner takes it): known, seeded or unknown item, partial or whole, with
    extra attributes, null fields, groups, numeric times, now and then an anomaly or a far future."""
    i = int(rng.integers(0, 330))
    doc = DOCS[i] if i < len(DOCS) else {"stock_quantity": 40, "min_stock_level": 10, "max_stock_level": 90,
                                         "price": 9.5, "category": "tv"}  # fmt: skip
    msg: dict[str, Any] = {"item_id": f"sku-{i}"}
    roll = rng.random()
    msg["event_id"] = f"e{k}" if roll < 0.7 else (None if roll < 0.85 else "")
    for key in ("stock_quantity", "min_stock_level", "max_stock_level", "price"):
        if rng.random() < (0.9 if key == "stock_quantity" else 0.3):
            factor = float(rng.choice([0.0, 0.5, 0.9, 1.0, 1.1, 12.0, 50.0]))
            value = doc[key] * factor
            msg[key] = round(value, 2) if rng.random() < 0.5 else int(value)
    if rng.random() < 0.4:
        t = rng.random()
        msg["occurred_at"] = (
            1_764_500_000 + 60 * k if t < 0.4 else 1_764_500_000.125 + 60 * k if t < 0.7 else None
        )
    if k % 61 == 7:
        msg["occurred_at"] = 1_900_000_000  # years ahead: a future_time dead letter
    g = rng.random()
    if g < 0.5:
        msg["category"] = doc["category"] if g < 0.4 else None
    if rng.random() < 0.5:  # attributes: everything the detector does not read
        msg["warehouse_id"] = f"WH-{k % 7}"
        msg["batch_no"] = k
        msg["fragile"] = bool(k % 2)
        msg["note"] = None if k % 3 else "n" * 120
        msg["weight"] = -0.0 if k % 5 == 0 else 1.25
    keys = list(msg)
    order = rng.permutation(len(keys)).tolist()
    return {keys[j]: msg[keys[j]] for j in order}


def _records(seed: int, n: int = 400) -> list[Rec]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        msg = _message(rng, k)
        value = orjson.dumps(msg)
        if k % 11 == 0:
            value = b" " + value.replace(b",", b", ").replace(b":", b": ") + b"\n"
        headers = [TRACE, ("authorization", b"x")] if k % 4 == 0 else []
        out.append(Rec("in", k % 2, 100 + k, 1_000 + k, msg["item_id"].encode(), value, headers))
    return out


def _run(detector: ChangeDetector, recs: list[Rec], config: BatchConfig, *, episodes: bool) -> BatchResult:
    """The two halves of ``recs`` as two batches, then a batch read again across both (replays of
    the items its updates changed since, and updates no state holds decided anew), all merged."""
    ctx = ChangeContext(foreground_store(MemoryChangelog()), "g.in.state", SnapshotSeeds(DOCS),
                        episodes=EpisodeContext() if episodes else None)  # fmt: skip
    ctx.prepare(detector, {("in", 0): 100, ("in", 1): 101}, lambda: None)
    half = len(recs) // 2
    merged: BatchResult | None = None
    for batch in (recs[:half], recs[half:], recs[half - 50 : half + 50]):
        result = process_change_batch(batch, detector, ctx, config, now=NOW)
        ctx.published(result)
        ctx.acknowledged(result)
        if merged is None:
            merged = result
            continue
        merged.outputs += result.outputs
        merged.anomalies += result.anomalies
        merged.dlq_reasons += result.dlq_reasons
        merged.n_in += result.n_in
        merged.n_valid += result.n_valid
        merged.suppressed += result.suppressed
    assert merged is not None
    return merged


def _summary(result: BatchResult) -> tuple[Any, ...]:
    """Everything published (a pack's key is random: :mod:`consumer.scoring.state.packed`)."""
    outputs = [(o.topic, PACK_PREFIX if is_pack(o.key) else o.key, o.value, list(o.headers or []))
               for o in result.outputs]  # fmt: skip
    return outputs, result.anomalies, result.n_in, result.n_valid, dict(result.dlq_reasons), result.suppressed


@pytest.mark.parametrize(("seed", "decisions", "episodes"), [(0, False, False), (1, True, False),
                                                             (2, False, True), (3, True, True)])  # fmt: skip
def test_the_scan_path_publishes_what_the_dict_path_publishes(
    detector: ChangeDetector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    seed: int, decisions: bool, episodes: bool, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setattr(batch_module, "dead_lettered_at", lambda: "2026-12-01T12:00:00.000+00:00")
    recs = _records(seed)
    group = detector.metadata.group_field
    for batch in (recs[:200], recs[200:], recs[150:250]):  # every batch takes the scan
        assert scan_updates([r.value for r in batch], group) is not None
    config = _config(tmp_path, detector.version or "", decisions=decisions)
    scanned = _run(detector, recs, config, episodes=episodes)
    monkeypatch.setattr(update_decode, "scan_updates", lambda values, group_field: None)
    decoded = _run(detector, recs, config, episodes=episodes)
    assert _summary(scanned) == _summary(decoded)
    # the batches exercised what the scan must carry to the events
    events = [orjson.loads(o.value or b"") for o in scanned.outputs if o.topic == "anomalies"]
    reasons = scanned.dlq_reasons
    assert events and reasons["missing_field"] and reasons["future_time"]
    assert any(e["item"]["attributes"] for e in events)
    assert any(e["event_id"] is None for e in events) or any(e["event_id"] == "" for e in events)
    assert any(o.headers for o in scanned.outputs if o.topic == "anomalies")
    assert any(r.getMessage().startswith("skipping") for r in caplog.records)  # replays, read again


def test_the_scan_path_hands_lazy_objects_to_the_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the test above: a plain batch really does take the scan in process_change_batch."""
    seen: list[Any] = []
    real = update_decode.decode_updates

    def spy(*args: Any) -> Any:
        out = real(*args)
        seen.append(out[0])
        return out

    import consumer.scoring.change_batch as change_batch

    monkeypatch.setattr(change_batch, "decode_updates", spy)
    detector = train_detector(parse_updates(DOCS)[0])
    ctx = ChangeContext(foreground_store(MemoryChangelog()), "g.in.state", SnapshotSeeds(DOCS))
    ctx.prepare(detector, {("in", 0): 100, ("in", 1): 101}, lambda: None)
    process_change_batch(_records(5)[:50], detector, ctx, BatchConfig("a", "d"), now=NOW)
    assert len(seen) == 1 and isinstance(seen[0], LazyObjects)
