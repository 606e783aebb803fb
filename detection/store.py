"""Versioned, verified model files: publish atomically, load only what checks out.

Layout under the model directory::

    CURRENT                         the current version id (switched with os.replace)
    .lock                           flock taken by writers (publish, rollback, pruning)
    20261125T180102Z-1a2b3c4d/      one directory per version, renamed into place whole
        scorer.npz                  scaler + forest as plain arrays (detection.scorer_arrays), either detector
        model.joblib                the scikit-learn objects, for people and notebooks: never loaded here
        metadata.json               ModelMetadata as JSON; a ``default`` detector's rules, peers, hull and
                                    calibration too (DetectorMetadata, detection.served)
        manifest.json               format version, version id, sklearn version, file sha256 + size
        manifest.sig                hex HMAC-SHA256 of the manifest bytes (only when signed)

Nothing is unpickled (``scorer.npz`` is read with ``allow_pickle=False`` and checked index by index):
write access to the model directory cannot run code here. Files are read as regular files with a
size cap, and the bytes that were hashed are the bytes that are parsed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import logging
import os
import secrets
import shutil
from datetime import UTC, datetime
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson

from detection.metadata import ModelMetadata
from detection.scorer_arrays import ScorerArrayError, dump_arrays, load_arrays
from detection.served import ALL_KINDS, SEED_ONLY, DetectorKind, build_served, parse_metadata
from detection.store_files import (
    exclusive_lock,
    fsync_dir,
    read_capped,
    sha256,
    write_synced,
)
from detection.store_types import VERSION_RE as _VERSION_RE
from detection.store_types import ModelNotFoundError, ModelVerificationError, VersionInfo, check_version_id

if TYPE_CHECKING:  # scoring needs sklearn and numba; listing and verifying versions does not
    from collections.abc import Collection

    from detection.detector import ChangeDetector
    from detection.model import AnomalyModel

__all__ = ["ModelNotFoundError", "ModelStore", "ModelVerificationError", "VersionInfo"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
CURRENT_FILE = "CURRENT"
SCORER_FILE = "scorer.npz"
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
_PAYLOAD_FILES = (SCORER_FILE, MODEL_FILE, METADATA_FILE)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# Read caps: far above what a real version holds, low enough that no file can exhaust memory.
_CAPS = {CURRENT_FILE: 256, MANIFEST_FILE: 65_536, SIGNATURE_FILE: 1024, METADATA_FILE: 4 << 20}
_PAYLOAD_CAP = 512 << 20


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

    def current_version(self) -> str | None:
        """The version CURRENT points at, or None before the first publish (reads one small file)."""
        try:
            text = _read(self.root / CURRENT_FILE).decode("ascii", "replace").strip()
        except FileNotFoundError:
            return None
        if not _VERSION_RE.match(text):  # its content is not echoed: it may be anything
            raise ModelVerificationError(f"{self.root / CURRENT_FILE} does not hold a version id")
        return text

    def load(self, version: str | None = None) -> AnomalyModel:
        """Verify and load seed model ``version`` (None = CURRENT), for callers that run seed models
        only; a ``default`` one is a verification refusal saying who serves it."""
        return cast("AnomalyModel", self._load_current(version, SEED_ONLY))

    def load_any(self, version: str | None = None) -> AnomalyModel | ChangeDetector:
        """:meth:`load` for callers that serve both detectors (``consume``, ``score``): an
        ``AnomalyModel`` or a ``ChangeDetector``."""
        return self._load_current(version, ALL_KINDS)

    def _load_current(
        self, version: str | None, kinds: Collection[DetectorKind]
    ) -> AnomalyModel | ChangeDetector:
        """Raises ModelNotFoundError / ModelVerificationError."""
        if version is not None:
            return self._load(check_version_id(version), kinds)
        for _attempt in range(5):
            current = self.current_version()
            if current is None:
                raise ModelNotFoundError(f"no model published yet in {self.root}")
            try:
                return self._load(current, kinds)
            except ModelNotFoundError:
                # CURRENT moved on and retention removed the version we were reading: try again.
                if self.current_version() == current:
                    raise
        raise ModelNotFoundError(f"CURRENT in {self.root} kept moving while loading; try again")

    def metadata(self, version: str) -> ModelMetadata:
        """The metadata of ``version`` after the same checks as :meth:`load` (nothing is unpickled)."""
        return self.verify(check_version_id(version))[1]

    def verify(self, version: str) -> tuple[dict[str, Any], ModelMetadata]:
        """Everything :meth:`load` checks, without building the scorer: its arrays and metadata."""
        manifest = self._verified_manifest(version)
        self._check_sklearn(version, manifest)
        files = {name: self._verified_file(version, manifest, name) for name in _PAYLOAD_FILES}
        try:
            meta = parse_metadata(files[METADATA_FILE])
            arrays = load_arrays(files[SCORER_FILE], n_features=len(meta.feature_names))
        except (ScorerArrayError, ValueError) as exc:
            raise ModelVerificationError(f"model {version}: unusable files ({str(exc)[:200]})") from None
        if meta.version != version:
            raise ModelVerificationError(f"model {version}: metadata names version {meta.version!r}")
        return arrays, meta

    def versions(self) -> list[VersionInfo]:
        """Every stored version, oldest first. Problems are reported in ``VersionInfo.error``."""
        current = self.current_version()
        infos = []
        for version in self._version_ids():
            try:
                meta = self.verify(version)[1]
            except (ModelVerificationError, ModelNotFoundError) as exc:  # refused: never "signed"
                infos.append(VersionInfo(version, None, None, None, version == current, False, str(exc)))
                continue
            signed = (self.root / version / SIGNATURE_FILE).exists()
            info = (meta.created_at, meta.n_samples, meta.threshold)
            infos.append(VersionInfo(version, *info, version == current, signed, detector=meta.detector))
        return infos

    def publish(self, model: AnomalyModel | ChangeDetector) -> str:
        """Write ``model`` as a new version, switch CURRENT to it, prune old versions; returns its id."""
        scorer_bytes = dump_arrays(model.to_arrays())
        files = {SCORER_FILE: scorer_bytes}
        if model.forest is not None:  # inspection copy; a model loaded from arrays has none
            import joblib

            buffer = io.BytesIO()
            joblib.dump({"scaler": model.scaler, "forest": model.forest}, buffer)
            files[MODEL_FILE] = buffer.getvalue()
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            self._remove_leftovers()
            now = datetime.now(UTC)
            version = self._new_version_id(now)
            meta = model.metadata.model_copy(update={"version": version, "threshold": model.threshold})
            files[METADATA_FILE] = meta.model_dump_json(indent=2).encode()
            manifest = {
                "format_version": FORMAT_VERSION,
                "version": version,
                "published_at": now.strftime(_TIME_FORMAT),
                "sklearn_version": _sklearn_version(),
                "files": {name: {"sha256": sha256(data), "size": len(data)} for name, data in files.items()},
            }
            files[MANIFEST_FILE] = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            if self._key is not None:
                files[SIGNATURE_FILE] = self._sign(files[MANIFEST_FILE]).encode("ascii")
            tmp = self.root / f".tmp-{version}"
            tmp.mkdir()
            for name, data in files.items():
                write_synced(tmp / name, data)
            fsync_dir(tmp)
            tmp.rename(self.root / version)
            fsync_dir(self.root)
            self._set_current(version)
            self._prune(current=version)
        logger.info("published model %s (%d bytes, signed=%s)", version, len(scorer_bytes), bool(self._key))
        return version

    def rollback(self, version: str) -> None:
        """Switch CURRENT to a kept ``version`` after the same checks as :meth:`load`."""
        self.verify(check_version_id(version))
        with self._lock():
            if not (self.root / version).is_dir():
                raise ModelNotFoundError(f"model version {version} disappeared from {self.root}")
            self._set_current(version)
        logger.info("rolled back CURRENT to model %s", version)

    def _load(self, version: str, kinds: Collection[DetectorKind]) -> AnomalyModel | ChangeDetector:
        arrays, meta = self.verify(version)
        return build_served(version, arrays, meta, kinds)

    def _verified_manifest(self, version: str) -> dict[str, Any]:
        """Read manifest.json once; check its signature (when keyed) and its structure."""
        vdir = self.root / version
        if vdir.is_symlink():  # its files could live anywhere the link points
            raise ModelVerificationError(f"model {version}: its directory is a symlink; refusing it")
        try:
            raw = _read(vdir / MANIFEST_FILE)
        except FileNotFoundError:
            if vdir.exists():  # a version without a manifest is a refusal, not "not there yet"
                raise ModelVerificationError(f"model {version} has no {MANIFEST_FILE}") from None
            raise ModelNotFoundError(f"model version {version} not found in {self.root}") from None
        if self._key is not None:
            try:
                signature = _read(vdir / SIGNATURE_FILE).decode("ascii", "replace").strip()
            except FileNotFoundError:
                self._check_not_pruned(version)
                raise ModelVerificationError(
                    f"model {version} is unsigned but a signing key is set"
                ) from None
            if not hmac.compare_digest(self._sign(raw), signature):
                raise ModelVerificationError(f"model {version}: manifest signature does not match")
        try:
            manifest = dict(orjson.loads(raw))
            named = str(manifest.get("version", version))[:80]
            ok = "version" in manifest and manifest["format_version"] == FORMAT_VERSION
            ok = ok and all(isinstance(manifest["files"][n], dict) for n in (SCORER_FILE, METADATA_FILE))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            named, ok = version, False
        if named != version:  # a copied directory (`cp -r models/V models/V2`)
            why = f"{MANIFEST_FILE} names version {named}, not {version}"
            raise ModelVerificationError(f"model {version}: {why}")
        if not ok:
            raise ModelVerificationError(f"model {version}: {MANIFEST_FILE} is unreadable or incomplete")
        return manifest

    def _check_sklearn(self, version: str, manifest: dict[str, Any]) -> None:
        saved = manifest.get("sklearn_version")
        if saved != _sklearn_version() and not self.allow_sklearn_mismatch:
            raise ModelVerificationError(
                f"model {version} was saved with scikit-learn {saved} but this is {_sklearn_version()}; "
                "retrain it, or set allow_sklearn_mismatch (STOCKWATCH_ALLOW_SKLEARN_MISMATCH=1)"
            )

    def _verified_file(self, version: str, manifest: dict[str, Any], name: str) -> bytes:
        """The bytes of one file, read once and checked against the manifest's size and sha256."""
        entry = manifest["files"].get(name)
        if entry is None and name == MODEL_FILE:
            return b""  # the inspection copy is optional; when listed, it must match
        if not isinstance(entry, dict):
            raise ModelVerificationError(f"model {version}: {MANIFEST_FILE} does not list {name}")
        try:
            data = _read(self.root / version / name)
        except FileNotFoundError:
            self._check_not_pruned(version)
            raise ModelVerificationError(f"model version {version}: {name} is missing") from None
        if len(data) != entry.get("size") or sha256(data) != entry.get("sha256"):
            raise ModelVerificationError(f"model {version}: checksum mismatch for {name}; refusing it")
        return data

    def _check_not_pruned(self, version: str) -> None:  # then the caller looks at CURRENT again
        if not (self.root / version).is_dir():
            raise ModelNotFoundError(f"model version {version} was removed while reading it")

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
                    published = str(orjson.loads(_read(entry / MANIFEST_FILE))["published_at"])
                except (OSError, ModelVerificationError, orjson.JSONDecodeError, KeyError, TypeError):
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
        write_synced(tmp, f"{version}\n".encode("ascii"))
        os.replace(tmp, self.root / CURRENT_FILE)
        fsync_dir(self.root)

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

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return exclusive_lock(
            self.root / ".lock"
        )  # a FIFO/dir/link planted there is refused, never waited on


def _sklearn_version() -> str:
    """The installed scikit-learn's version, read without importing it."""
    return _dist_version("scikit-learn")


def _read(path: Path) -> bytes:
    """``read_capped`` with the cap of the file's kind (an unsafe file is a ModelVerificationError)."""
    return read_capped(path, _CAPS.get(path.name, _PAYLOAD_CAP))
