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
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if set(npz.files) != set(SCORER_KEYS):
                raise ScorerArrayError(f"expected arrays {sorted(SCORER_KEYS)}, got {sorted(npz.files)}")
            arrays = {k: npz[k] for k in SCORER_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ScorerArrayError):
            raise
        raise ScorerArrayError(f"not a readable array file: {exc}") from None
    check_arrays(arrays, n_features=n_features)
    return arrays


def _scalar(arrays: Mapping[str, npt.NDArray[np.generic]], name: str, kind: str) -> float:
    a = np.asarray(arrays[name])
    if a.shape != () or a.dtype.kind not in kind:
        raise ScorerArrayError(f"{name} must be a scalar of kind {kind!r}, got {a.dtype} {a.shape}")
    value = float(a)
    if not np.isfinite(value):
        raise ScorerArrayError(f"{name} must be finite")
    return value


def check_arrays(arrays: Mapping[str, npt.NDArray[np.generic]], *, n_features: int | None = None) -> None:
    """Raise :class:`ScorerArrayError` unless every kernel index is in range and every walk ends.

    ``n_features``: the expected feature count (from the model's metadata: 7 for ``seed``, 11 for
    ``default``); None accepts the count the arrays declare.
    """
    missing = set(SCORER_KEYS) - set(arrays)
    if missing:
        raise ScorerArrayError(f"missing arrays: {sorted(missing)}")
    declared = int(_scalar(arrays, "n_features", "iu"))
    if n_features is not None and declared != n_features:
        raise ScorerArrayError(
            f"the arrays hold a forest of {declared} features, the metadata names {n_features}"
        )
    n_features = declared
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
