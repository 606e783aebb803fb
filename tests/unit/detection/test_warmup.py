"""warm_up runs a served model's compiled kernels once on a scratch batch, leaving the model as it was."""

from __future__ import annotations

import numpy as np

from detection import parse_updates, train_detector, train_model
from detection.features import N_FEATURES
from detection.item_state import StateTable
from detection.warmup import kernels_compiled, scratch_models, warm_up
from scripts.inventory_sim import SimConfig, simulate
from tests.unit.detection.test_store import make_items


def test_a_default_detector_decides_a_scratch_batch_and_is_unchanged() -> None:
    snapshot_docs, events, _ = simulate(SimConfig(seed=7, n_items=60, days=2, error_rate=0.0))
    detector = train_detector(parse_updates(snapshot_docs)[0])
    updates = parse_updates(events[:50])[0]
    before = detector.decide_batch(StateTable(), updates)[0]
    assert warm_up(detector) is True
    assert kernels_compiled()
    after = detector.decide_batch(StateTable(), updates)[0]
    np.testing.assert_array_equal(before.scores, after.scores)


def test_a_seed_model_is_warmed_and_other_objects_are_left_alone() -> None:
    model_a = train_model(make_items())
    scores = model_a.score(np.ones((3, N_FEATURES)))
    assert warm_up(model_a) is True
    np.testing.assert_array_equal(model_a.score(np.ones((3, N_FEATURES))), scores)
    assert warm_up(object()) is False


def test_the_image_builds_scratch_models_of_both_detectors_to_warm() -> None:
    seed, default = scratch_models()
    assert warm_up(seed) is True and warm_up(default) is True
    assert default.metadata.detector == "default" and seed.metadata.detector == "seed"
