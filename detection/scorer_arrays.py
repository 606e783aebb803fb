"""The serving format of a model: plain numpy arrays in an ``.npz``, read with ``allow_pickle=False``.

A scorer needs only the scaler's ``mean``/``scale`` and the compiled forest's arrays, so that is
all the serving path reads: no pickle, nothing that can run code. The arrays are still untrusted
input (anyone who can write the model directory can write them, and without a signing key the
checksums prove nothing), and the numba kernel does no bounds checks, so :func:`check_arrays`
proves every index stays in range and every walk terminates before a kernel sees them.
Importable without scikit-learn or numba (``stockwatch models list`` verifies with it).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from numpy.lib import format as npformat

__all__ = ["NODE_DTYPE", "SCORER_KEYS", "ScorerArrayError", "check_arrays", "dump_arrays", "load_arrays"]

#: One node, 8 bytes: a float32 threshold and ``link = child << shift | feature``.
NODE_DTYPE: Final = np.dtype([("threshold", np.float32), ("link", np.int32)])

SCORER_KEYS: Final = (
    "mean",
    "scale",
    "nodes",
    "leaf_value",
    "missing_left",
    "n_trees",
    "depth",
    "shift",
    "denominator",
    "n_features",
    "offset",
)
_SCALARS: Final = ("n_trees", "depth", "shift", "denominator", "n_features", "offset")
MAX_NODES: Final = 1 << 26  # far above any forest the project trains (100 trees x 511 nodes)
MAX_FEATURES: Final = 4096  # far above the feature count of any detector
#: Declared uncompressed bytes per file byte: dump_arrays stores members uncompressed (about 1x),
#: so more than this is a decompression bomb, refused before any member is inflated.
MAX_EXPANSION: Final = 4
_EXPANSION_SLACK: Final = 1 << 16  # a tiny file's zip overhead must not make its ratio look bad


class ScorerArrayError(ValueError):
    """The arrays do not describe a forest the kernel can walk safely."""


def dump_arrays(arrays: Mapping[str, npt.NDArray[np.generic]]) -> bytes:
    """The ``.npz`` bytes of ``arrays`` (exactly :data:`SCORER_KEYS`)."""
    check_arrays(arrays)
    buffer = io.BytesIO()
    named: dict[str, Any] = {k: np.asarray(arrays[k]) for k in SCORER_KEYS}
    np.savez(buffer, allow_pickle=False, **named)
    return buffer.getvalue()


def load_arrays(data: bytes, *, n_features: int | None = None) -> dict[str, npt.NDArray[np.generic]]:
    """Read and check ``.npz`` bytes without unpickling; raises :class:`ScorerArrayError`.

    ``n_features``: the feature count the model's metadata names (None: whatever the arrays say).
    The members' declared sizes (zip central directory) must stay within :data:`MAX_EXPANSION` of
    the file's size before anything is inflated. Every member's ``.npy`` header is read and checked (dtype, shape, uncompressed size) before
    any data is: a small compressed member cannot expand into more than its checked shape.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = _members(archive)
            _check_expansion(members, len(data))
            headers = {key: _header(archive, info) for key, info in members.items()}
            scalars = {k: _read_member(archive, members[k]) for k in _SCALARS}
            _check_shapes(headers, scalars)
            rest = {k: _read_member(archive, members[k]) for k in SCORER_KEYS if k not in scalars}
            arrays = {k: scalars[k] if k in scalars else rest[k] for k in SCORER_KEYS}
    except ScorerArrayError:
        raise
    except MemoryError:
        raise ScorerArrayError("an array does not fit in memory") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ScorerArrayError(f"not a readable array file: {exc}") from None
    check_arrays(arrays, n_features=n_features)
    return arrays


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by array name: exactly :data:`SCORER_KEYS`, each once."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    expected = {f"{k}.npy" for k in SCORER_KEYS}
    if len(names) != len(set(names)) or set(names) != expected:
        raise ScorerArrayError(f"expected the members {sorted(expected)} once each, got {sorted(names)}")
    return {info.filename.removesuffix(".npy"): info for info in infos}


def _check_expansion(members: Mapping[str, zipfile.ZipInfo], file_bytes: int) -> None:
    """Refuse from the central directory alone when the members would inflate far beyond the file."""
    declared = sum(info.file_size for info in members.values())
    if declared > MAX_EXPANSION * file_bytes + _EXPANSION_SLACK:
        largest = max(members.values(), key=lambda info: info.file_size).filename
        raise ScorerArrayError(
            f"the members (largest {largest}) declare {declared} uncompressed bytes in a "
            f"{file_bytes}-byte file (over {MAX_EXPANSION}x): refused before decompressing"
        )


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """A member's shape and dtype from its ``.npy`` header, after checking its declared size."""
    with archive.open(info) as stream:
        major_minor = npformat.read_magic(stream)
        if major_minor == (1, 0):
            shape, _fortran, dtype = npformat.read_array_header_1_0(stream)
        elif major_minor == (2, 0):
            shape, _fortran, dtype = npformat.read_array_header_2_0(stream)
        else:
            raise ScorerArrayError(f"{info.filename}: unsupported .npy format {major_minor}")
        header_bytes = stream.tell()
    if dtype.hasobject:
        raise ScorerArrayError(f"{info.filename}: object arrays are refused")
    count = 1
    for dim in shape:
        count *= int(dim)
    if len(shape) > 1 or count > MAX_NODES:
        raise ScorerArrayError(f"{info.filename}: shape {shape} is outside the limits")
    if info.file_size != header_bytes + count * dtype.itemsize:
        raise ScorerArrayError(f"{info.filename}: {info.file_size} bytes do not match its header")
    return tuple(int(d) for d in shape), dtype


def _check_shapes(
    headers: Mapping[str, tuple[tuple[int, ...], np.dtype[Any]]],
    scalars: Mapping[str, npt.NDArray[np.generic]],
) -> None:
    """The arrays' declared shapes against the scalars, before their data is read."""
    n_features = int(_scalar(scalars, "n_features", "iu"))
    if not 1 <= n_features <= MAX_FEATURES:
        raise ScorerArrayError(f"n_features must be 1..{MAX_FEATURES}")
    nodes_shape = headers["nodes"][0]
    expected: dict[str, tuple[tuple[int, ...], Any]] = {
        "mean": ((n_features,), np.float64),
        "scale": ((n_features,), np.float64),
        "nodes": (nodes_shape, NODE_DTYPE),
        "leaf_value": (nodes_shape, np.float64),
        "missing_left": (nodes_shape, np.uint8),
    }
    for name, (shape, dtype) in expected.items():
        if headers[name] != (shape, np.dtype(dtype)) or len(shape) != 1:
            raise ScorerArrayError(f"{name} must be 1-d {np.dtype(dtype)} of shape {shape}")
    for name in _SCALARS:
        if headers[name][0] != ():
            raise ScorerArrayError(f"{name} must be a scalar")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> npt.NDArray[np.generic]:
    with archive.open(info) as stream:
        return np.asarray(npformat.read_array(stream, allow_pickle=False))


def _scalar(arrays: Mapping[str, npt.NDArray[np.generic]], name: str, kind: str) -> float:
    a = np.asarray(arrays[name])
    if a.shape != () or a.dtype.kind not in kind:
        raise ScorerArrayError(f"{name} must be a scalar of kind {kind!r}, got {a.dtype} {a.shape}")
    value = float(a)
    if not np.isfinite(value):
        raise ScorerArrayError(f"{name} must be finite")
    return value


def _feature_count(arrays: Mapping[str, npt.NDArray[np.generic]], expected: int | None) -> int:
    """The feature count the arrays declare, if it is the expected one and within MAX_FEATURES."""
    declared = int(_scalar(arrays, "n_features", "iu"))
    if expected is not None and declared != expected:
        raise ScorerArrayError(
            f"the arrays hold a forest of {declared} features, the metadata names {expected}"
        )
    if declared > MAX_FEATURES:
        raise ScorerArrayError(f"n_features must be at most {MAX_FEATURES}")
    return declared


def check_arrays(arrays: Mapping[str, npt.NDArray[np.generic]], *, n_features: int | None = None) -> None:
    """Raise :class:`ScorerArrayError` unless every kernel index is in range and every walk ends.

    ``n_features``: the expected feature count (from the model's metadata: 7 for ``seed``, 11 for
    ``default``); None accepts the count the arrays declare.
    """
    missing = set(SCORER_KEYS) - set(arrays)
    if missing:
        raise ScorerArrayError(f"missing arrays: {sorted(missing)}")
    n_features = _feature_count(arrays, n_features)
    n_trees = int(_scalar(arrays, "n_trees", "iu"))
    depth = int(_scalar(arrays, "depth", "iu"))
    shift = int(_scalar(arrays, "shift", "iu"))
    for name in ("denominator", "offset"):
        _scalar(arrays, name, "f")
    mean, scale = np.asarray(arrays["mean"]), np.asarray(arrays["scale"])
    for name, a in (("mean", mean), ("scale", scale)):
        if a.dtype != np.float64 or a.shape != (n_features,) or not np.all(np.isfinite(a)):
            raise ScorerArrayError(f"{name} must be {n_features} finite float64 values")
    if np.any(scale == 0.0):
        raise ScorerArrayError("scale must not contain zeros")
    nodes = np.asarray(arrays["nodes"])
    n = nodes.shape[0] if nodes.ndim == 1 else -1
    if nodes.dtype != NODE_DTYPE or not 1 <= n <= MAX_NODES:
        raise ScorerArrayError(f"nodes must be 1-d {NODE_DTYPE} with 1..{MAX_NODES} entries")
    leaf_value, missing_left = np.asarray(arrays["leaf_value"]), np.asarray(arrays["missing_left"])
    if leaf_value.dtype != np.float64 or leaf_value.shape != (n,) or not np.all(np.isfinite(leaf_value)):
        raise ScorerArrayError("leaf_value must hold one finite float64 per node")
    if missing_left.dtype != np.uint8 or missing_left.shape != (n,):
        raise ScorerArrayError("missing_left must hold one uint8 per node")
    if not (n_features >= 1 and shift == n_features.bit_length() and 1 <= n_trees <= n and 0 <= depth <= n):
        raise ScorerArrayError("n_features, shift, n_trees or depth are inconsistent")
    link = nodes["link"].astype(np.int64)
    feature, child = link & ((1 << shift) - 1), link >> shift
    index = np.arange(n)
    leaf = feature == n_features
    # Leaves loop onto themselves; a split's children (child, child + 1) come after it, so every
    # walk moves forward and ends, and every index the kernel reads is inside the arrays.
    ok = (link >= 0) & (feature <= n_features)
    ok &= np.where(leaf, child == index, (child > index) & (child + 1 < n))
    if not bool(np.all(ok)):
        raise ScorerArrayError(f"{int(np.count_nonzero(~ok))} nodes link outside the forest")
    if not bool(np.all(np.isfinite(nodes["threshold"][~leaf]))):
        raise ScorerArrayError("split thresholds must be finite")
