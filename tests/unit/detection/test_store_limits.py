"""The store refuses metadata a scorer cannot use and version directories that are symlinks."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from detection import parse_item, train_model
from detection.store import MANIFEST_FILE, METADATA_FILE, ModelStore, ModelVerificationError


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(7)
    items = [
        parse_item({"item_id": f"sku-{i}", "stock_quantity": float(rng.integers(50, 200))}) for i in range(64)
    ]
    return train_model(items)


def _rewrite_metadata(vdir: Path, **changes: object) -> None:
    """What an attacker without the signing key (or a corrupting editor) does: edit and rehash."""
    meta = json.loads((vdir / METADATA_FILE).read_text())
    meta.update(changes)
    data = json.dumps(meta).encode()
    (vdir / METADATA_FILE).write_bytes(data)
    manifest = json.loads((vdir / MANIFEST_FILE).read_text())
    manifest["files"][METADATA_FILE] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (vdir / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "changes",
    [
        {"threshold": "NaN"},
        {"threshold": "Infinity"},
        {"threshold": 1e300},
        {"offset": "-inf"},
        {"n_samples": 1e30},
        {"effective_max_samples": 0},
    ],
    ids=[
        "nan-threshold",
        "inf-threshold",
        "huge-threshold",
        "inf-offset",
        "huge-n-samples",
        "zero-max-samples",
    ],
)
def test_unusable_metadata_is_refused_by_verify_load_and_rollback(tmp_path, model, changes):
    store = ModelStore(tmp_path)
    first = store.publish(model)
    second = store.publish(model)
    _rewrite_metadata(tmp_path / first, **changes)
    with pytest.raises(ModelVerificationError, match="unusable"):
        store.verify(first)
    with pytest.raises(ModelVerificationError):
        store.rollback(first)
    with pytest.raises(ModelVerificationError):
        store.load(first)
    assert store.current_version() == second
    listed = {info.version: info for info in store.versions()}
    assert listed[first].error and listed[second].error is None


def test_a_version_directory_that_is_a_symlink_is_refused(tmp_path, model):
    elsewhere = tmp_path / "elsewhere"
    store = ModelStore(elsewhere)
    linked = store.publish(model)
    root = tmp_path / "store"
    store = ModelStore(root)
    current = store.publish(model)
    shutil.move(str(elsewhere / linked), str(tmp_path / "outside"))
    (root / linked).symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(ModelVerificationError, match="symlink"):
        store.load(linked)
    with pytest.raises(ModelVerificationError, match="symlink"):
        store.rollback(linked)
    assert store.current_version() == current
    listed = {info.version: info for info in store.versions()}
    assert "symlink" in (listed[linked].error or "")
