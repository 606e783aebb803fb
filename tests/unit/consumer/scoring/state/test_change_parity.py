"""process_change_batch (parse fast path, prior states from the store, decide_local) decides every
batch as the numpy reference decides it on the items' states gathered the straightforward way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest

from consumer.scoring.batch import BatchConfig
from consumer.scoring.change_batch import ChangeContext, process_change_batch
from consumer.scoring.state.record import join, states_of
from consumer.scoring.state.seeds import SnapshotSeeds
from consumer.scoring.state.store import StateStore
from consumer.scoring.state.table import PartitionTable
from detection import ChangeDetector, StateTable, parse_updates, train_detector
from detection.decide_reference import decide_batch_reference
from detection.detector import baseline_table
from detection.updates import parse_updates_by_row
from tests.fakes import MemoryChangelog, Rec, foreground_store
from tests.unit.detection.test_detector import snapshot_docs

CONFIG = BatchConfig(anomaly_topic="anomalies", dlq_topic="dlq", decisions_topic="decisions")
DOCS = snapshot_docs()  # sku-0 .. sku-299
HELD = {d["item_id"] for d in DOCS[:200]}  # in the store; sku-200 .. 299 only in the seed; 300+ nowhere


@pytest.fixture(scope="module")
def detector() -> ChangeDetector:
    return train_detector(parse_updates(DOCS)[0])


def message(rng: np.random.Generator, k: int) -> Any:
    """A partial update of a held, seeded or unknown item; now and then an invalid one."""
    i = int(rng.integers(0, 330))
    doc = DOCS[i] if i < len(DOCS) else {"stock_quantity": 40, "min_stock_level": 10, "max_stock_level": 90,
                                         "price": 9.5}  # fmt: skip
    msg: dict[str, Any] = {"item_id": f"sku-{i}", "event_id": f"e{k}"}
    for key in ("stock_quantity", "min_stock_level", "max_stock_level", "price"):
        if rng.random() < (0.9 if key == "stock_quantity" else 0.25):
            msg[key] = doc[key] * float(rng.choice([0.0, 0.5, 0.9, 1.0, 1.1, 12.0, -1.0]))
    roll = rng.random()
    if roll < 0.05:
        msg["stock_quantity"] = str(msg.get("stock_quantity", 3))  # a numeric string: the row parser
    elif roll < 0.08:
        msg["price"] = None  # rejected
    elif roll < 0.1:
        msg["min_stock"] = msg.pop("min_stock_level", 5)  # an alias
    elif roll < 0.12:
        return b"not json"
    if rng.random() < 0.3:
        msg["occurred_at"] = 1_700_000_000 + 3600 * k if rng.random() < 0.5 else "2026-11-30T10:00:00Z"
    if rng.random() < 0.2:
        msg["category"] = "tv" if rng.random() < 0.5 else "fasteners"
    return msg


def batch_records(seed: int, n: int = 300) -> list[Rec]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        m = message(rng, k)
        p = int(rng.integers(0, 2))  # items repeat within the batch, some across both partitions
        value = m if isinstance(m, bytes) else orjson.dumps(m)
        out.append(Rec("in", p, 100 + k, 1_000 + k, None, value, []))
    return out


def store_with_held_items() -> StateStore:
    store = foreground_store(MemoryChangelog())
    table = baseline_table(parse_updates([d for d in DOCS if d["item_id"] in HELD])[0])
    for p in (0, 1):
        ids = [i for i in table if int(i.split("-")[1]) % 2 == p]
        part = PartitionTable()
        part.load(ids, join(table.gather(table.lookup(ids))), np.full(len(ids), 50))
        store._tables[p] = part
    return store


def reference(detector: ChangeDetector, store: StateStore, recs: list[Rec]) -> dict[str, Any]:
    """Decisions and state changes the straightforward way: a dict-indexed StateTable of the
    batch's items (from each item's last update's partition, else the seed), the numpy reference."""
    objs, keep = [], []
    for r in recs:
        try:
            obj = orjson.loads(r.value)
        except orjson.JSONDecodeError:
            continue
        objs.append(obj)
        keep.append(r)
    updates, rejects = parse_updates_by_row(objs)
    bad = {i for i, _ in rejects}
    rows = [r for i, r in enumerate(keep) if i not in bad]
    table = StateTable()
    for r, item in zip(rows, updates.item_ids, strict=True):
        part = store.table(r.partition)
        at = part.lookup([item])
        if at[0] >= 0:
            table.scatter([item], states_of(part.get(at)[0]))
    seed = baseline_table(
        SnapshotSeeds(DOCS).seed([i for i in dict.fromkeys(updates.item_ids) if i not in table])
    )
    for item in seed:
        table.scatter([item], seed.gather(seed.lookup([item])))
    decisions, changes = decide_batch_reference(detector, table, updates)
    last = {item: r for item, r in zip(updates.item_ids, rows, strict=True)}
    state = {(last[i].partition, i): (rec.tobytes(), last[i].offset)
             for i, rec in zip(changes.item_ids, changes.records, strict=True)}  # fmt: skip
    scored = {(r.partition, r.offset): (float(decisions.scores[k]), bool(decisions.is_anomaly[k]))
              for k, r in enumerate(rows) if k not in decisions.rejected}  # fmt: skip
    missing = {(rows[k].partition, rows[k].offset) for k in decisions.rejected}
    return {"scored": scored, "missing": missing, "state": state, "invalid": len(rejects)}


@pytest.mark.parametrize("seed", range(6))
def test_the_change_path_decides_as_the_reference(detector: ChangeDetector, seed: int) -> None:
    recs = batch_records(seed)
    want = reference(detector, store_with_held_items(), recs)
    store = store_with_held_items()
    ctx = ChangeContext(store, "g.in.state", SnapshotSeeds(DOCS))
    result = process_change_batch(recs, detector, ctx, CONFIG, now=datetime.now(UTC))
    scored: dict[tuple[int, int], tuple[float, bool]] = {}
    missing, invalid = set(), 0
    for o in result.outputs:
        if o.topic == "decisions":
            event = orjson.loads(o.value or b"")
            scored[(event["source"]["partition"], event["source"]["offset"])] = (
                event["score"],
                event["is_anomaly"],
            )
        elif o.topic == "dlq":
            headers = dict(o.headers)
            if headers["dlq.reason"] == b"missing_field":
                missing.add((int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"])))
            invalid += headers["dlq.reason"] == b"invalid_item"
    assert scored.keys() == want["scored"].keys()
    for key, (score, flag) in scored.items():
        assert flag == want["scored"][key][1], key
        assert score == pytest.approx(want["scored"][key][0], abs=1e-9)
    assert missing == want["missing"] and invalid == want["invalid"]
    assert result.state is not None
    state = {(p, i): (rec.tobytes(), int(off))  # the detector's part of each item record
             for p, (ids, recs_, offs) in result.state.by_partition.items()
             for i, rec, off in zip(ids, states_of(recs_), offs, strict=True)}  # fmt: skip
    assert state == want["state"]
    assert any(flag for _, flag in scored.values()) and missing  # the batch exercised both
