"""Write access to the model directory must not run code or stall a loader (issue: faults and attacks)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

from detection import parse_item, train_model
from detection.scorer_arrays import ScorerArrayError, check_arrays, dump_arrays, load_arrays
from detection.store import (
    CURRENT_FILE,
    MANIFEST_FILE,
    METADATA_FILE,
    MODEL_FILE,
    SCORER_FILE,
    ModelStore,
    ModelVerificationError,
)


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(3)
    items = [
        parse_item(
            {
                "item_id": f"sku-{i}",
                "stock_quantity": float(rng.integers(50, 200)),
                "min_stock_level": 50,
                "max_stock_level": 200,
                "price": float(rng.uniform(5, 20)),
            }
        )
        for i in range(100)
    ]
    return train_model(items)


def _evil(marker: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    return pickle.dumps(Evil())


def _rehash(vdir: Path, name: str, data: bytes) -> None:
    """What an attacker without the signing key does: replace a file and fix its checksum."""
    (vdir / name).write_bytes(data)
    manifest = json.loads((vdir / MANIFEST_FILE).read_text())
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (vdir / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", [SCORER_FILE, MODEL_FILE, METADATA_FILE, MANIFEST_FILE, CURRENT_FILE])
def test_a_rehashed_malicious_pickle_in_any_file_runs_nothing(tmp_path, model, name):
    store = ModelStore(tmp_path)
    version = store.publish(model)
    marker = tmp_path / f"pwned-{name}"
    evil = _evil(marker)
    if name in (MANIFEST_FILE, CURRENT_FILE):
        target = tmp_path / CURRENT_FILE if name == CURRENT_FILE else tmp_path / version / name
        target.write_bytes(evil)
    else:
        _rehash(tmp_path / version, name, evil)
    for attempt in (
        store.load,
        store.versions,
        lambda: store.rollback(version),
        lambda: store.metadata(version),
    ):
        with contextlib.suppress(ModelVerificationError, LookupError):
            attempt()
    assert not marker.exists()


def test_the_inspection_pickle_is_never_what_scores(tmp_path, model):
    store = ModelStore(tmp_path)
    version = store.publish(model)
    marker = tmp_path / "pwned"
    _rehash(tmp_path / version, MODEL_FILE, _evil(marker))
    x = np.array([[100.0, 2.0, 0.3, 1000.0, 10.0, 50.0, 200.0]])
    np.testing.assert_array_equal(store.load().score(x), model.score(x))
    assert not marker.exists()


def test_a_fifo_as_a_model_file_is_refused_at_once(tmp_path, model):
    store = ModelStore(tmp_path)
    version = store.publish(model)
    os.remove(tmp_path / version / SCORER_FILE)
    os.mkfifo(tmp_path / version / SCORER_FILE)
    outcome: list[BaseException] = []
    thread = threading.Thread(target=lambda: _capture(store.load, outcome), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "a FIFO must not block the loader"
    assert isinstance(outcome[0], ModelVerificationError) and "regular file" in str(outcome[0])


def _capture(fn, into):
    try:
        fn()
    except BaseException as exc:
        into.append(exc)


def test_an_oversized_manifest_is_refused_without_reading_it(tmp_path, model):
    store = ModelStore(tmp_path)
    version = store.publish(model)
    with (tmp_path / version / MANIFEST_FILE).open("ab") as fh:
        fh.truncate(10 << 20)
    with pytest.raises(ModelVerificationError, match="cap"):
        store.load()


def test_a_version_without_a_manifest_is_a_refusal(tmp_path, model):
    store = ModelStore(tmp_path)
    version = store.publish(model)
    os.remove(tmp_path / version / MANIFEST_FILE)
    with pytest.raises(ModelVerificationError, match=r"no manifest\.json"):
        store.load()
    assert "no manifest.json" in (store.versions()[0].error or "")


def _arrays(model):
    return {k: np.array(v, copy=True) for k, v in model.to_arrays().items()}


@pytest.mark.parametrize(
    "corrupt",
    [
        "child_out_of_range",
        "child_loops_back",
        "feature_out_of_range",
        "negative_link",
        "wrong_dtype",
        "nan_scale",
        "zero_scale",
        "too_many_trees",
    ],
)
def test_forged_arrays_that_would_walk_outside_the_forest_are_refused(model, corrupt):
    arrays = _arrays(model)
    nodes, shift = arrays["nodes"], int(arrays["shift"])
    split = int(np.flatnonzero((nodes["link"] & ((1 << shift) - 1)) != int(arrays["n_features"]))[0])
    if corrupt == "child_out_of_range":
        nodes["link"][split] = (len(nodes) << shift) | 0
    elif corrupt == "child_loops_back":
        nodes["link"][split] = (split << shift) | 0
    elif corrupt == "feature_out_of_range":
        nodes["link"][split] = (nodes["link"][split] & ~((1 << shift) - 1)) | ((1 << shift) - 1)
    elif corrupt == "negative_link":
        nodes["link"][split] = -5
    elif corrupt == "wrong_dtype":
        arrays["leaf_value"] = arrays["leaf_value"].astype(np.float32)
    elif corrupt == "nan_scale":
        arrays["scale"][0] = np.nan
    elif corrupt == "zero_scale":
        arrays["scale"][0] = 0.0
    elif corrupt == "too_many_trees":
        arrays["n_trees"] = np.asarray(len(nodes) + 1)
    with pytest.raises(ScorerArrayError):
        check_arrays(arrays)


def test_arrays_round_trip_and_a_pickle_is_not_an_array_file(model, tmp_path):
    arrays = load_arrays(dump_arrays(model.to_arrays()))
    for key, value in model.to_arrays().items():
        np.testing.assert_array_equal(arrays[key], value)
    marker = tmp_path / "pwned"
    with pytest.raises(ScorerArrayError):
        load_arrays(_evil(marker))
    assert not marker.exists()


def _plant_lock(root: Path, kind: str) -> None:
    lock = root / ".lock"
    lock.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(lock)
    elif kind == "dir":
        lock.mkdir()
    else:
        (root / "elsewhere").touch()
        lock.symlink_to(root / "elsewhere")


@pytest.mark.parametrize("kind", ["fifo", "dir", "symlink"])
@pytest.mark.parametrize("action", ["publish", "rollback"])
def test_a_planted_lock_file_is_refused_not_waited_on(tmp_path, model, kind, action):
    store = ModelStore(tmp_path)
    first = store.publish(model)
    _plant_lock(tmp_path, kind)
    call = (lambda: store.publish(model)) if action == "publish" else (lambda: store.rollback(first))
    outcome: list[BaseException] = []
    thread = threading.Thread(target=lambda: _capture(call, outcome), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), f"a {kind} .lock must not block {action}"
    assert isinstance(outcome[0], ModelVerificationError)
    assert str(outcome[0]) == f"{tmp_path / '.lock'} is not a regular file; remove it"
    assert store.current_version() == first and store.versions()[-1].version == first
