"""Streamed snapshots: counts, exclusions, chunking, and training through the column adapter."""

from __future__ import annotations

import logging

import numpy as np

from consumer.retraining.snapshot import collect, iter_item_chunks
from detection import parse_item, train_model, train_on_features
from detection.features import feature_matrix


def docs(n: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    return [
        {
            "_id": f"s{i}",
            "stock_quantity": int(rng.integers(0, 500)),
            "min_stock_level": 10,
            "max_stock_level": int(rng.integers(100, 900)),
            "price": float(rng.uniform(1, 9)),
        }
        for i in range(n)
    ]


def test_collect_counts_invalid_and_excluded_and_keeps_order(caplog: object) -> None:
    source = [*docs(25), {"_id": "bad", "price": float("nan")}, {"_id": "b2", "stock_quantity": True}]
    with caplog.at_level(logging.INFO):  # type: ignore[attr-defined]
        snap = collect(iter(source), chunk_size=4, exclude_ids={"s0", "s3"}, progress_every=10, expected=27)
    assert (snap.n_read, snap.n_invalid, snap.n_excluded, snap.n_usable) == (27, 2, 2, 23)
    assert snap.invalid_examples[0].startswith("bad: price")
    kept = [parse_item(d) for d in docs(25) if d["_id"] not in ("s0", "s3")]
    np.testing.assert_array_equal(snap.features, feature_matrix(kept))
    assert "snapshot progress" in caplog.text  # type: ignore[attr-defined]
    assert snap.summary()["excluded_flagged"] == 2


def test_chunks_are_bounded() -> None:
    sizes = [len(c) for c in iter_item_chunks(iter(docs(10)), chunk_size=3, require_id=True)]
    assert sizes == [3, 3, 3, 1]


def test_empty_snapshot() -> None:
    snap = collect(iter([]))
    assert snap.features.shape == (0, 7) and snap.n_usable == 0


def test_training_on_the_snapshot_matrix_equals_training_on_items() -> None:
    items = [parse_item(d) for d in docs(200)]
    snap = collect(iter(docs(200)))
    via_snapshot = train_on_features(snap.features)
    direct = train_model(items)
    x = feature_matrix(items)
    np.testing.assert_array_equal(snap.features, x)
    np.testing.assert_array_equal(via_snapshot.score(x), direct.score(x))
    assert via_snapshot.metadata.offset == direct.metadata.offset


def test_sample_is_a_subset_without_repeats() -> None:
    snap = collect(iter(docs(100)))
    sample = snap.sample(30)
    assert sample.shape == (30, 7)
    assert len({tuple(r) for r in sample}) == len({tuple(r) for r in sample.tolist()})
    assert snap.sample(1000).shape == (100, 7)
