"""Versioned, verified model files: publish atomically, load only what checks out.

Layout under the model directory::

    CURRENT                         the current version id (switched with os.replace)
    .lock                           flock taken by writers (publish, rollback, pruning)
    20261125T180102Z-1a2b3c4d/      one directory per version, renamed into place whole
        model.joblib                joblib dump of {"scaler": ..., "forest": ...}
        metadata.json               ModelMetadata as JSON (never pickled); for a ``default``
                                    detector a DetectorMetadata: also its rules table, peer
                                    statistics, hull and severity calibration (plain JSON)
        manifest.json               format version, version id, sklearn version, file sha256 + size
        manifest.sig                hex HMAC-SHA256 of the manifest bytes (only when signed)

Nothing is unpickled before the manifest signature (when a key is set) and every file checksum
has been verified; the bytes that were hashed are the bytes that are unpickled.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import io
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import orjson
import sklearn

from detection.detector import ChangeDetector
from detection.detector_meta import DetectorMetadata
from detection.model import AnomalyModel, ModelMetadata

__all__ = ["ModelNotFoundError", "ModelStore", "ModelVerificationError", "VersionInfo"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CURRENT_FILE = "CURRENT"
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
_PAYLOAD_FILES = (MODEL_FILE, METADATA_FILE)
_VERSION_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class ModelVerificationError(ValueError):
    """A model's files, signature or scikit-learn version did not pass verification."""


class ModelNotFoundError(LookupError):
    """No model has been published yet, or the requested version does not exist."""


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One stored version as listed by :meth:`ModelStore.versions` (read without unpickling)."""

    version: str
    created_at: datetime | None
    n_samples: int | None
    threshold: float | None
    is_current: bool
    signed: bool
    error: str | None = None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _check_version_id(version: str) -> str:
    if not _VERSION_RE.match(version):
        raise ModelNotFoundError(f"{version!r} is not a version id (like 20261125T180102Z-1a2b3c4d)")
    return version


class ModelStore:
    """Model versions in ``root``; see the module docstring for the file layout.

    ``signing_key``: when set, publish signs the manifest and load refuses unsigned or badly
    signed models. ``keep``: how many versions publish retains (CURRENT's target is never
    deleted). ``allow_sklearn_mismatch``: load models saved by another scikit-learn version.
    """

    def __init__(
        self,
        root: Path,
        *,
        signing_key: bytes | None = None,
        keep: int = 5,
        allow_sklearn_mismatch: bool = False,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        if signing_key is not None and not signing_key:
            raise ValueError("signing_key must not be empty (None disables signing)")
        self.root = Path(root)
        self._key = signing_key
        self.keep = keep
        self.allow_sklearn_mismatch = allow_sklearn_mismatch

    # ------------------------------------------------------------------ reading

    def current_version(self) -> str | None:
        """The version CURRENT points at, or None before the first publish (reads one small file)."""
        try:
            text = (self.root / CURRENT_FILE).read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        if not _VERSION_RE.match(text):
            raise ModelVerificationError(f"{self.root / CURRENT_FILE} holds no version id: {text[:60]!r}")
        return text

    def load(self, version: str | None = None) -> AnomalyModel:
        """Verify and load a ``seed`` model (None = CURRENT). Raises ModelNotFoundError /
        ModelVerificationError (also for a ``default`` detector: load it with :meth:`load_detector`)."""
        model = self.load_detector(version)
        if not isinstance(model, AnomalyModel):
            raise ModelVerificationError(
                f"model {model.version} is a {model.metadata.detector!r} detector; "
                "this caller loads seed models only (use ModelStore.load_detector)"
            )
        return model

    def load_detector(self, version: str | None = None) -> AnomalyModel | ChangeDetector:
        """Verify and load ``version`` (None = CURRENT) as the detector its metadata names."""
        if version is not None:
            return self._load(_check_version_id(version))
        for _attempt in range(5):
            current = self.current_version()
            if current is None:
                raise ModelNotFoundError(f"no model published yet in {self.root}")
            try:
                return self._load(current)
            except ModelNotFoundError:
                # CURRENT moved on and retention removed the version we were reading: try again.
                if self.current_version() == current:
                    raise
        raise ModelNotFoundError(f"CURRENT in {self.root} kept moving while loading; try again")

    def metadata(self, version: str) -> ModelMetadata:
        """The verified metadata of ``version`` (signature and checksum checked, nothing unpickled)."""
        manifest = self._verified_manifest(_check_version_id(version))
        data = self._verified_file(version, manifest, METADATA_FILE)
        return ModelMetadata.model_validate_json(data)

    def versions(self) -> list[VersionInfo]:
        """Every stored version, oldest first. Problems are reported in ``VersionInfo.error``."""
        current = self.current_version()
        infos = []
        for version in self._version_ids():
            signed = (self.root / version / SIGNATURE_FILE).exists()
            try:
                meta = self.metadata(version)
            except (ModelVerificationError, ModelNotFoundError, ValueError) as exc:
                infos.append(VersionInfo(version, None, None, None, version == current, signed, str(exc)))
                continue
            info = (meta.created_at, meta.n_samples, meta.threshold)
            infos.append(VersionInfo(version, *info, version == current, signed))
        return infos

    # ------------------------------------------------------------------ writing

    def publish(self, model: AnomalyModel | ChangeDetector) -> str:
        """Write ``model`` as a new version, switch CURRENT to it, prune old versions; returns its id."""
        buffer = io.BytesIO()
        joblib.dump({"scaler": model.scaler, "forest": model.forest}, buffer)
        model_bytes = buffer.getvalue()
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            self._remove_leftovers()
            now = datetime.now(UTC)
            version = self._new_version_id(now)
            meta = model.metadata.model_copy(update={"version": version, "threshold": model.threshold})
            files = {MODEL_FILE: model_bytes, METADATA_FILE: meta.model_dump_json(indent=2).encode()}
            manifest = {
                "format_version": FORMAT_VERSION,
                "version": version,
                "published_at": now.strftime(_TIME_FORMAT),
                "sklearn_version": sklearn.__version__,
                "files": {name: {"sha256": _sha256(data), "size": len(data)} for name, data in files.items()},
            }
            files[MANIFEST_FILE] = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            if self._key is not None:
                files[SIGNATURE_FILE] = self._sign(files[MANIFEST_FILE]).encode("ascii")
            tmp = self.root / f".tmp-{version}"
            tmp.mkdir()
            for name, data in files.items():
                _write_synced(tmp / name, data)
            _fsync_dir(tmp)
            tmp.rename(self.root / version)
            _fsync_dir(self.root)
            self._set_current(version)
            self._prune(current=version)
        logger.info("published model %s (%d bytes, signed=%s)", version, len(model_bytes), bool(self._key))
        return version

    def rollback(self, version: str) -> None:
        """Switch CURRENT to a kept ``version`` after verifying its files (nothing is unpickled)."""
        manifest = self._verified_manifest(_check_version_id(version))
        self._check_sklearn(version, manifest)
        for name in _PAYLOAD_FILES:
            self._verified_file(version, manifest, name)
        with self._lock():
            if not (self.root / version).is_dir():
                raise ModelNotFoundError(f"model version {version} disappeared from {self.root}")
            self._set_current(version)
        logger.info("rolled back CURRENT to model %s", version)

    # ------------------------------------------------------------------ internals

    def _load(self, version: str) -> AnomalyModel | ChangeDetector:
        manifest = self._verified_manifest(version)
        self._check_sklearn(version, manifest)
        files = {name: self._verified_file(version, manifest, name) for name in _PAYLOAD_FILES}
        # Only verified bytes reach joblib (never a path that could be swapped after hashing).
        payload = joblib.load(io.BytesIO(files[MODEL_FILE]))
        if not isinstance(payload, dict) or not {"scaler", "forest"} <= payload.keys():
            raise ModelVerificationError(f"model {version}: {MODEL_FILE} does not hold a scaler and a forest")
        meta = ModelMetadata.model_validate_json(files[METADATA_FILE])
        if meta.version != version:
            raise ModelVerificationError(f"model {version}: metadata names version {meta.version!r}")
        if meta.detector == "default":
            detail = DetectorMetadata.model_validate_json(files[METADATA_FILE])
            return ChangeDetector(scaler=payload["scaler"], forest=payload["forest"], metadata=detail)
        return AnomalyModel(
            scaler=payload["scaler"], forest=payload["forest"], metadata=meta, threshold=meta.threshold
        )

    def _verified_manifest(self, version: str) -> dict[str, Any]:
        """Read manifest.json once; check its signature (when keyed) and its structure."""
        vdir = self.root / version
        try:
            raw = (vdir / MANIFEST_FILE).read_bytes()
        except FileNotFoundError:
            raise ModelNotFoundError(f"model version {version} not found in {self.root}") from None
        if self._key is not None:
            try:
                signature = (vdir / SIGNATURE_FILE).read_text(encoding="ascii").strip()
            except FileNotFoundError:
                raise ModelVerificationError(
                    f"model {version} is unsigned but a signing key is set"
                ) from None
            if not hmac.compare_digest(self._sign(raw), signature):
                raise ModelVerificationError(f"model {version}: manifest signature does not match")
        try:
            manifest = dict(orjson.loads(raw))
            ok = manifest["version"] == version and manifest["format_version"] == FORMAT_VERSION
            ok = ok and all(isinstance(manifest["files"][name], dict) for name in _PAYLOAD_FILES)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise ModelVerificationError(f"model {version}: {MANIFEST_FILE} is unreadable or incomplete")
        return manifest

    def _check_sklearn(self, version: str, manifest: dict[str, Any]) -> None:
        saved = manifest.get("sklearn_version")
        if saved != sklearn.__version__ and not self.allow_sklearn_mismatch:
            raise ModelVerificationError(
                f"model {version} was saved with scikit-learn {saved} but this is {sklearn.__version__}; "
                "retrain it, or set allow_sklearn_mismatch (STOCKWATCH_ALLOW_SKLEARN_MISMATCH=1)"
            )

    def _verified_file(self, version: str, manifest: dict[str, Any], name: str) -> bytes:
        """The bytes of one file, read once and checked against the manifest's size and sha256."""
        try:
            data = (self.root / version / name).read_bytes()
        except FileNotFoundError:
            raise ModelNotFoundError(f"model version {version}: {name} is missing") from None
        entry = manifest["files"][name]
        if len(data) != entry.get("size") or _sha256(data) != entry.get("sha256"):
            raise ModelVerificationError(f"model {version}: checksum mismatch for {name}; refusing it")
        return data

    def _sign(self, manifest_bytes: bytes) -> str:
        assert self._key is not None
        return hmac.new(self._key, manifest_bytes, hashlib.sha256).hexdigest()

    def _version_ids(self) -> list[str]:
        """Stored version ids, oldest first (publish time from the manifest, then the id)."""
        if not self.root.is_dir():
            return []
        keyed = []
        for entry in self.root.iterdir():
            if entry.is_dir() and _VERSION_RE.match(entry.name):
                try:
                    published = str(orjson.loads((entry / MANIFEST_FILE).read_bytes())["published_at"])
                except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
                    published = ""
                keyed.append((published or entry.name, entry.name))
        return [name for _, name in sorted(keyed)]

    def _new_version_id(self, now: datetime) -> str:
        while True:
            version = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"
            if not (self.root / version).exists():
                return version

    def _set_current(self, version: str) -> None:
        tmp = self.root / f".{CURRENT_FILE}.tmp-{secrets.token_hex(4)}"
        _write_synced(tmp, f"{version}\n".encode("ascii"))
        os.replace(tmp, self.root / CURRENT_FILE)
        _fsync_dir(self.root)

    def _prune(self, *, current: str) -> None:
        old = self._version_ids()[: -self.keep]
        for version in old:
            if version == current or version == self.current_version():
                continue
            trash = self.root / f".trash-{version}"
            (self.root / version).rename(trash)  # atomic: readers see the whole version or none
            shutil.rmtree(trash, ignore_errors=True)
            logger.info("removed old model %s (keep=%d)", version, self.keep)

    def _remove_leftovers(self) -> None:
        """Remove temp/trash entries of writers that died (we hold the lock, so none is live)."""
        for entry in self.root.iterdir():
            if entry.name.startswith((".tmp-", ".trash-", f".{CURRENT_FILE}.tmp-")):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with (self.root / ".lock").open("a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
