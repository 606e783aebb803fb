"""ModelStore: atomic publish, verified load (checksums, HMAC, sklearn version), retention, rollback."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import joblib
import numpy as np
import pytest

import detection
from detection import feature_matrix, parse_item, train_model
from detection.store import (
    MANIFEST_FILE,
    METADATA_FILE,
    MODEL_FILE,
    SCORER_FILE,
    SIGNATURE_FILE,
    ModelNotFoundError,
    ModelStore,
    ModelVerificationError,
)

KEY = b"test-signing-key-0123456789abcdef"


def make_items(n: int = 200, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [
        parse_item(
            {
                "item_id": f"sku-{i}",
                "stock_quantity": float(rng.integers(50, 200)),
                "min_stock_level": 50,
                "max_stock_level": 200,
                "price": float(rng.uniform(5, 20)),
            }
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def items() -> list:
    return make_items()


@pytest.fixture(scope="module")
def model_a(items):
    return train_model(items)


@pytest.fixture(scope="module")
def model_b():
    return train_model(make_items(seed=1))


def scores(model, items) -> np.ndarray:
    return np.asarray(model.decide(items).scores, dtype=np.float64)


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


class ModelHolder:
    """The serving pattern: swap in a new model only when it loads cleanly, else keep the old one."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self.model = store.load()
        self.errors: list[str] = []

    def refresh(self) -> None:
        try:
            self.model = self.store.load()
        except (ModelVerificationError, ModelNotFoundError) as exc:
            self.errors.append(str(exc))


def test_round_trip_gives_identical_scores(tmp_path, model_a, items):
    store = ModelStore(tmp_path)
    assert store.current_version() is None
    version = store.publish(model_a)
    assert store.current_version() == version
    loaded = store.load()
    assert loaded.version == version
    assert loaded.threshold == model_a.threshold
    np.testing.assert_array_equal(scores(loaded, items), scores(model_a, items))
    np.testing.assert_array_equal(loaded.score(feature_matrix(items)), model_a.score(feature_matrix(items)))
    manifest = json.loads((tmp_path / version / MANIFEST_FILE).read_text())
    assert manifest["version"] == version
    assert set(manifest["files"]) == {SCORER_FILE, MODEL_FILE, METADATA_FILE}
    assert not (tmp_path / version / SIGNATURE_FILE).exists()


def test_version_ids_are_unique_and_sortable(tmp_path, model_a):
    store = ModelStore(tmp_path, keep=10)
    published = [store.publish(model_a) for _ in range(4)]
    assert len(set(published)) == 4
    assert [info.version for info in store.versions()] == published
    assert all(len(v) == len("20261125T180102Z-1a2b3c4d") for v in published)


def test_no_model_yet(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model published yet"):
        ModelStore(tmp_path / "missing").load()
    assert ModelStore(tmp_path / "missing").versions() == []


def test_a_version_pruned_between_its_files_is_looked_up_again(
    tmp_path, model_a, model_b, items, monkeypatch
):
    """The race the threaded test below hits by chance: the manifest is read, then the version goes."""
    import detection.store as store_module

    store = ModelStore(tmp_path, keep=1)
    first = store.publish(model_a)
    real_read = store_module._read
    pruned: list[str] = []

    def read(path: Path) -> bytes:
        if path.name == METADATA_FILE and path.parent.name == first and not pruned:
            pruned.append(ModelStore(tmp_path, keep=1).publish(model_b))  # prunes `first`
        return real_read(path)

    monkeypatch.setattr(store_module, "_read", read)
    loaded = store.load()
    assert loaded.version == pruned[0] != first
    assert list(scores(loaded, items[:20])) == list(scores(model_b, items[:20]))


def test_reader_racing_publisher_never_sees_a_partial_model(tmp_path, model_a, model_b, items):
    store = ModelStore(tmp_path, keep=2)
    expected = {tuple(scores(model_a, items[:20])), tuple(scores(model_b, items[:20]))}
    stop = threading.Event()
    failures: list[BaseException] = []
    loads = 0

    def reader() -> None:
        nonlocal loads
        reading = ModelStore(tmp_path, keep=2)
        while not stop.is_set():
            try:
                model = reading.load()
            except ModelNotFoundError as exc:
                if "no model published yet" not in str(exc):
                    failures.append(exc)
                continue
            except BaseException as exc:
                failures.append(exc)
                continue
            loads += 1
            if tuple(scores(model, items[:20])) not in expected:
                failures.append(AssertionError(f"unexpected scores from {model.version}"))

    # Another process polls and loads at the same time (its exit status and stdout report).
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from detection.store import ModelStore, ModelNotFoundError
        store, ok, deadline = ModelStore(Path({str(tmp_path)!r})), 0, time.monotonic() + 60
        while not Path({str(tmp_path / "stop")!r}).exists() and time.monotonic() < deadline:
            try:
                store.load(); ok += 1
            except ModelNotFoundError as exc:
                if "no model published yet" not in str(exc):
                    raise
        print(ok)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(detection.__file__).parent.parent)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(30):
            store.publish(model_a if i % 2 else model_b)
            assert (tmp_path / store.current_version()).is_dir()
    finally:
        stop.set()
        (tmp_path / "stop").touch()
        thread.join()
        out, _ = proc.communicate(timeout=120)
    assert failures == []
    assert loads > 0
    assert proc.returncode == 0
    assert int(out) >= 0
    assert len(store.versions()) == 2


@pytest.mark.parametrize("name", [SCORER_FILE, MODEL_FILE, METADATA_FILE])
def test_flipped_byte_is_refused_and_old_model_keeps_serving(tmp_path, model_a, model_b, items, name):
    store = ModelStore(tmp_path)
    old = store.publish(model_a)
    holder = ModelHolder(store)
    new = store.publish(model_b)
    flip_byte(tmp_path / new / name)
    with pytest.raises(ModelVerificationError, match=f"checksum mismatch for {name}"):
        store.load()
    holder.refresh()
    assert holder.model.version == old
    assert "checksum mismatch" in holder.errors[0]
    np.testing.assert_array_equal(scores(holder.model, items), scores(model_a, items))
    with pytest.raises(ModelVerificationError):
        store.rollback(new)


def _evil_pickle(marker: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    return pickle.dumps(Evil())


def test_payload_would_run_if_unpickled(tmp_path):
    """Control: the malicious payload really does create its marker when joblib loads it."""
    marker = tmp_path / "pwned-control"
    (tmp_path / "evil.joblib").write_bytes(_evil_pickle(marker))
    joblib.load(tmp_path / "evil.joblib")
    assert marker.exists()


def test_joblib_never_touches_a_file_whose_checksum_fails(tmp_path, model_a):
    store = ModelStore(tmp_path)
    version = store.publish(model_a)
    marker = tmp_path / "pwned"
    (tmp_path / version / MODEL_FILE).write_bytes(_evil_pickle(marker))
    with pytest.raises(ModelVerificationError, match="checksum mismatch"):
        store.load()
    assert not marker.exists()


def test_signed_store_refuses_rewritten_manifest_before_unpickling(tmp_path, model_a):
    store = ModelStore(tmp_path, signing_key=KEY)
    version = store.publish(model_a)
    marker = tmp_path / "pwned"
    evil = _evil_pickle(marker)
    vdir = tmp_path / version
    (vdir / MODEL_FILE).write_bytes(evil)
    manifest = json.loads((vdir / MANIFEST_FILE).read_text())
    manifest["files"][MODEL_FILE] = {"sha256": hashlib.sha256(evil).hexdigest(), "size": len(evil)}
    (vdir / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelVerificationError, match="signature"):
        store.load()
    assert not marker.exists()


def test_loading_never_unpickles(tmp_path, model_a, monkeypatch):
    store = ModelStore(tmp_path)
    store.publish(model_a)
    seen: list[object] = []

    def spy(*args, **kwargs):
        seen.append(args)
        raise AssertionError("unpickling on the serving path")

    monkeypatch.setattr(joblib, "load", spy)
    monkeypatch.setattr(pickle, "loads", spy)
    monkeypatch.setattr(pickle, "load", spy)
    store.load()
    store.versions()
    assert seen == []


def test_signature(tmp_path, model_a, items):
    signed = ModelStore(tmp_path, signing_key=KEY)
    version = signed.publish(model_a)
    assert (tmp_path / version / SIGNATURE_FILE).exists()
    np.testing.assert_array_equal(scores(signed.load(), items), scores(model_a, items))
    assert signed.versions()[0].signed

    with pytest.raises(ModelVerificationError, match="signature does not match"):
        ModelStore(tmp_path, signing_key=b"another key").load()

    flip_byte(tmp_path / version / MANIFEST_FILE, offset=5)
    with pytest.raises(ModelVerificationError, match="signature does not match"):
        signed.load()


def test_unsigned_model_refused_when_key_set(tmp_path, model_a):
    version = ModelStore(tmp_path).publish(model_a)
    with pytest.raises(ModelVerificationError, match="unsigned"):
        ModelStore(tmp_path, signing_key=KEY).load()
    with pytest.raises(ModelVerificationError, match="unsigned"):
        ModelStore(tmp_path, signing_key=KEY).rollback(version)
    info = ModelStore(tmp_path, signing_key=KEY).versions()[0]
    assert info.error is not None and not info.signed


def test_sklearn_version_mismatch(tmp_path, model_a, items):
    version = ModelStore(tmp_path).publish(model_a)
    path = tmp_path / version / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["sklearn_version"] = "0.0.1"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelVerificationError, match=r"scikit-learn 0\.0\.1.*allow_sklearn_mismatch"):
        ModelStore(tmp_path).load()
    loaded = ModelStore(tmp_path, allow_sklearn_mismatch=True).load()
    np.testing.assert_array_equal(scores(loaded, items), scores(model_a, items))


def test_retention_keeps_n_and_never_current(tmp_path, model_a):
    store = ModelStore(tmp_path, keep=3)
    published = [store.publish(model_a) for _ in range(6)]
    assert [v.version for v in store.versions()] == published[-3:]
    assert [v.is_current for v in store.versions()] == [False, False, True]
    # CURRENT rolled back to the oldest kept version survives pruning.
    store.rollback(published[3])
    store._prune(current=published[3])
    assert (tmp_path / published[3]).is_dir()
    # With keep=1 the next publish keeps only itself (the old CURRENT is no longer current).
    newest = ModelStore(tmp_path, keep=1).publish(model_a)
    assert [v.version for v in store.versions()] == [newest]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".trash-"))]


def test_rollback(tmp_path, model_a, model_b, items):
    store = ModelStore(tmp_path)
    first = store.publish(model_a)
    second = store.publish(model_b)
    store.rollback(first)
    assert store.current_version() == first
    np.testing.assert_array_equal(scores(store.load(), items), scores(model_a, items))
    assert [v.is_current for v in store.versions()] == [True, False]
    store.rollback(second)
    assert store.current_version() == second
    with pytest.raises(ModelNotFoundError, match="not found"):
        store.rollback("20200101T000000Z-deadbeef")
    with pytest.raises(ModelNotFoundError, match="not a version id"):
        store.rollback("../../etc")
    with pytest.raises(ModelNotFoundError, match="not a version id"):  # `$` alone let a newline through
        store.rollback(f"{first}\n")
    assert store.current_version() == second


def test_metadata_and_versions_read_without_unpickling(tmp_path, model_a, monkeypatch):
    store = ModelStore(tmp_path)
    version = store.publish(model_a)
    monkeypatch.setattr(joblib, "load", lambda *a, **k: pytest.fail("joblib.load called"))
    meta = store.metadata(version)
    assert meta.version == version and meta.n_samples == 200
    (info,) = store.versions()
    assert info.version == version and info.n_samples == 200 and info.is_current
    assert info.threshold == model_a.threshold and info.error is None


def test_concurrent_publishers_are_serialised(tmp_path, model_a):
    errors: list[BaseException] = []
    published: list[str] = []

    def publisher() -> None:
        store = ModelStore(tmp_path, keep=20)
        for _ in range(4):
            try:
                published.append(store.publish(model_a))
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=publisher) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = ModelStore(tmp_path, keep=20)
    assert sorted(v.version for v in store.versions()) == sorted(published)
    assert len(set(published)) == 12
    assert store.current_version() in published
    assert all(v.error is None for v in store.versions())


def test_leftovers_of_a_crashed_publisher_are_ignored_then_removed(tmp_path, model_a):
    store = ModelStore(tmp_path)
    version = store.publish(model_a)
    crashed = tmp_path / ".tmp-20991231T235959Z-0badc0de"
    crashed.mkdir()
    (crashed / MODEL_FILE).write_bytes(b"half a model")
    assert [v.version for v in store.versions()] == [version]
    assert store.load().version == version
    store.publish(model_a)
    assert not crashed.exists()


def test_garbage_current_pointer_and_bad_arguments(tmp_path, model_a):
    store = ModelStore(tmp_path)
    store.publish(model_a)
    (tmp_path / "CURRENT").write_text("../../etc/passwd\n")
    with pytest.raises(ModelVerificationError, match="does not hold a version id") as caught:
        store.load()
    assert "passwd" not in str(caught.value)
    with pytest.raises(ValueError, match="keep"):
        ModelStore(tmp_path, keep=0)
    with pytest.raises(ValueError, match="empty"):
        ModelStore(tmp_path, signing_key=b"")


def test_a_copied_version_directory_is_refused_naming_both_versions(tmp_path, model_a):
    store = ModelStore(tmp_path, signing_key=KEY)
    version = store.publish(model_a)
    copy = version[:-8] + ("deadbeef" if not version.endswith("deadbeef") else "0badcafe")
    shutil.copytree(tmp_path / version, tmp_path / copy)  # `cp -r models/V models/V2`
    why = f"manifest.json names version {version}, not {copy}"
    with pytest.raises(ModelVerificationError, match=why):
        store.load(copy)
    with pytest.raises(ModelVerificationError, match=why):
        store.rollback(copy)
    infos = {info.version: info for info in store.versions()}
    assert infos[copy].error is not None and why in infos[copy].error
    assert not infos[copy].signed  # its signature is valid, but the version is refused
    assert infos[version].signed and infos[version].error is None
