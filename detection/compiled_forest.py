"""Exact, fast scoring of a fitted scikit-learn ``IsolationForest``.

``CompiledForest.from_sklearn`` flattens every tree of a fitted forest into one numpy record array
and scores rows with a numba kernel (``@njit(cache=True, nogil=True)``) whose results are
bit-identical to ``IsolationForest.score_samples`` / ``decision_function``.

Layout
------
``nodes`` holds all nodes of all trees, 8 bytes each: a float32 ``threshold`` and ``link = child <<
shift | feature`` (int32). Nodes are ordered level by level across the whole forest (all roots first,
in tree order, so root ``t`` is node ``t``; then every depth-1 node, ...) and the two children of a
split are adjacent (``right == child + 1``). ``feature`` is already mapped through
``estimators_features_`` to the caller's column. A leaf loops onto itself (``child`` = its own index)
and reads ``feature = n_features``, a sentinel slot of the row buffer holding ``-inf``, so it never
moves; its float64 depth contribution lives in ``leaf_value``. Each row therefore walks all trees
branch-free, one level at a time for the forest's depth (independent loads overlap):
``node = child + (x[feature] > threshold)``; then the leaf values are summed in tree order.

Exactness argument (scikit-learn 1.9, ``ensemble/_iforest.py`` and ``tree/_tree.pyx``)
-------------------------------------------------------------------------------------
* sklearn casts X to float32 and ``Tree.apply`` goes left iff ``float32 x <= float64 threshold``.
  The kernel stores ``floor32(threshold)``, the largest float32 <= threshold: for a float32 ``x``,
  ``x > threshold`` iff ``x > floor32(threshold)``, so comparing in float32 is exact.
* A NaN goes to the side chosen at fit time (``missing_go_to_left``, per node). Rows containing NaN
  take a (rare) branchy path that honours it; all other rows take the branch-free path.
* Trees were fit on ``X[:, estimators_features_[t]]`` only when ``_max_features != n_features``
  (otherwise the stored permutation is unused); the compiled feature ids follow the same rule.
* Per tree sklearn adds ``_decision_path_lengths[t][leaf] + _average_path_length_per_tree[t][leaf]
  - 1.0`` to a float64 accumulator, tree by tree. The leaf values are precomputed with that very
  numpy expression and summed in tree order without fast-math, so the sum is identical.
* ``-(depths / denominator)`` (``-1`` when the denominator is 0, as sklearn's ``np.divide(...,
  where=...)``) is IEEE-exact in the kernel; ``2 ** e`` is left to numpy's own ``np.power`` (its
  SIMD ``pow`` may differ from libm's in the last ulp); ``-p`` and ``(-offset) - p``
  (== ``(-p) - offset`` exactly) finish ``score_samples`` / ``decision_function``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit, prange
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length
from sklearn.utils.validation import check_is_fitted

from detection.scorer_arrays import NODE_DTYPE, check_arrays

__all__ = ["CompiledForest", "fast_offset"]

FloatArray = npt.NDArray[np.float64]


#: Batches at least this large (training sets in ``fast_offset``) use the multi-threaded kernel.
#: Kept high on purpose: on a busy 2-vCPU host (Kafka beside us) a parallel region waits for a
#: descheduled worker and 1k-10k row batches ran 1.3-6x slower than the serial kernel, and idle
#: OpenMP workers spin for a while after each region, slowing the next single-row calls.
PARALLEL_MIN_ROWS = 65_536
_CHUNK_ROWS = 4096
_TWO = np.array(2.0)  # ``2 ** e`` with a weak Python int runs this same float64 power loop
# numba's fallback "workqueue" threading layer aborts on concurrent parallel launches.
_PARALLEL_LOCK = threading.Lock()


def _jit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``njit(cache=True, nogil=True)``; without on-disk caching when no cache dir is usable."""

    def decorate(func: Callable[..., Any]) -> Any:
        try:
            return njit(cache=True, nogil=True, **options)(func)
        except RuntimeError:  # numba: "cannot cache function ...: no locator available"
            return njit(cache=False, nogil=True, **options)(func)

    return decorate


@_jit()
def _score_one(row, at, forest):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    """``-(sum of leaf values / denominator)`` of one float32 ``row`` (its last slot = -inf, the
    leaves' sentinel feature); ``at`` is a scratch buffer of one int64 per tree. Allocates nothing."""
    nodes, leaf_value, missing_left, n_trees, depth, shift, denominator = forest
    n_features = row.shape[0] - 1
    mask = (1 << shift) - 1
    has_nan = False
    for j in range(n_features):
        has_nan |= np.isnan(row[j])
    if not has_nan:  # all trees advance one level at a time: independent loads overlap
        for t in range(n_trees):
            at[t] = t
        for _ in range(depth):
            for t in range(n_trees):
                rec = nodes[at[t]]
                link = rec.link
                at[t] = (link >> shift) + (row[link & mask] > rec.threshold)
    else:  # NaN goes where the tree sent the missing values at fit time
        for t in range(n_trees):
            node = t
            while nodes[node].link & mask != n_features:
                rec = nodes[node]
                v = row[rec.link & mask]
                go_right = (missing_left[node] == 0) if np.isnan(v) else (v > rec.threshold)
                node = (rec.link >> shift) + go_right
            at[t] = node
    acc = 0.0
    for t in range(n_trees):  # tree order, as sklearn accumulates
        acc += leaf_value[at[t]]
    return -(acc / denominator) if denominator != 0.0 else -1.0


@_jit()
def _score_rows(data, start, stop, forest, out):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    """Write ``-(sum of leaf values / denominator)`` of rows ``start:stop`` into ``out``."""
    n_features = data.shape[1]
    row = np.empty(n_features + 1, np.float32)
    row[n_features] = -np.inf  # the leaves' sentinel feature
    at = np.empty(forest[3], np.int64)
    for i in range(start, stop):
        for j in range(n_features):
            row[j] = np.float32(data[i, j])
        out[i] = _score_one(row, at, forest)


@_jit()
def _score_serial(data, forest, out):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    _score_rows(data, 0, data.shape[0], forest, out)


@_jit(parallel=True)
def _score_parallel(data, forest, out, chunk):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    n = data.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        _score_rows(data, c * chunk, min(n, (c + 1) * chunk), forest, out)


def _floor_float32(x: FloatArray) -> npt.NDArray[np.float32]:
    """The largest float32 <= x: for any float32 ``v``, ``v > x`` iff ``v > _floor_float32(x)``."""
    with np.errstate(over="ignore"):
        f = x.astype(np.float32)
    above = f.astype(np.float64) > x
    f[above] = np.nextafter(f[above], np.float32(-np.inf))
    return f


class CompiledForest:
    """A fitted ``IsolationForest`` flattened for exact, allocation-light scoring.

    Build it with :meth:`from_sklearn`. Inputs are the scaled feature matrix, shape
    ``(n, n_features)`` or one row of shape ``(n_features,)`` (scored as a batch of one); float64
    and float32 are read as they are, other real dtypes are cast to float32 as sklearn does.
    Unlike sklearn an empty batch returns an empty array. Scoring is thread-safe (and releases the GIL).
    """

    __slots__ = ("_kernel_args", "n_features", "offset")

    def __init__(
        self,
        *,
        nodes: npt.NDArray[np.void],
        leaf_value: FloatArray,
        missing_left: npt.NDArray[np.uint8],
        n_trees: int,
        depth: int,
        shift: int,
        denominator: float,
        n_features: int,
        offset: float,
    ) -> None:
        self._kernel_args = (nodes, leaf_value, missing_left, n_trees, depth, shift, denominator)
        self.n_features = n_features
        self.offset = offset

    @property
    def bounded(self) -> bool:
        """Every ``score_samples`` is at least -1 (no negative path length): true of every fitted
        forest, not of any arrays :meth:`from_arrays` accepts (it checks only that they are finite)."""
        _, leaf_value, _, _, _, _, denominator = self._kernel_args
        return bool(denominator >= 0.0 and np.all(leaf_value >= 0.0))

    @classmethod
    def from_sklearn(cls, forest: IsolationForest) -> CompiledForest:
        """Flatten a fitted forest (see the module docstring for the layout)."""
        check_is_fitted(forest)
        n_features = int(forest.n_features_in_)
        n_trees = len(forest.estimators_)
        subsample = forest._max_features != n_features  # as _compute_chunked_score_samples decides
        trees = [e.tree_ for e in forest.estimators_]
        starts = np.cumsum([0] + [tr.node_count for tr in trees])
        parts: dict[str, list[npt.NDArray[Any]]] = {k: [] for k in ("feat", "thr", "left", "value", "nan")}
        for t, tr in enumerate(trees):
            columns = forest.estimators_features_[t] if subsample else np.arange(n_features)
            is_leaf = tr.children_left == -1
            parts["feat"].append(
                np.where(is_leaf, n_features, np.asarray(columns)[np.maximum(tr.feature, 0)])
            )
            parts["thr"].append(tr.threshold)
            parts["left"].append(np.where(is_leaf, -1, tr.children_left + starts[t]))
            # the very expression sklearn evaluates per sample and tree
            parts["value"].append(
                forest._decision_path_lengths[t] + forest._average_path_length_per_tree[t] - 1.0
            )
            parts["nan"].append(tr.missing_go_to_left)
        feat, thr, left, value, nan_left = (np.concatenate(parts[k]) for k in parts)
        right = np.concatenate(
            [
                np.where(tr.children_left == -1, -1, tr.children_right + s)
                for tr, s in zip(trees, starts, strict=False)
            ]
        )
        levels, frontier = [], starts[:-1]
        while frontier.size:  # level-order walk of all trees at once; siblings stay adjacent
            levels.append(frontier)
            split = frontier[left[frontier] != -1]
            frontier = np.stack([left[split], right[split]], axis=1).ravel()
        order = np.concatenate(levels)  # new index -> old index
        new_of_old = np.empty_like(order)
        new_of_old[order] = np.arange(order.size)
        leaf = left[order] == -1
        child = np.where(leaf, np.arange(order.size), new_of_old[np.maximum(left[order], 0)])
        if not np.array_equal(new_of_old[right[order][~leaf]], child[~leaf] + 1):  # pragma: no cover
            raise AssertionError("siblings are not adjacent")
        shift = int(n_features).bit_length()  # the sentinel n_features must fit too
        if order.size >= 1 << (31 - shift):
            raise ValueError(f"forest too large to compile: {order.size} nodes, {n_features} features")
        nodes = np.empty(order.size, dtype=NODE_DTYPE)
        nodes["threshold"] = np.where(leaf, np.float32(0.0), _floor_float32(thr[order]))
        nodes["link"] = (child << shift) | feat[order]
        c = n_trees * _average_path_length([forest._max_samples])  # sklearn's denominator
        return cls(
            nodes=nodes,
            leaf_value=np.where(leaf, value[order], 0.0),
            missing_left=nan_left[order].astype(np.uint8),
            n_trees=n_trees,
            depth=len(levels) - 1,
            shift=shift,
            denominator=float(c[0]),
            n_features=n_features,
            offset=float(forest.offset_),
        )

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The forest as plain arrays (the serving format, see :mod:`detection.scorer_arrays`)."""
        nodes, leaf_value, missing_left, n_trees, depth, shift, denominator = self._kernel_args
        return {
            "nodes": nodes,
            "leaf_value": leaf_value,
            "missing_left": missing_left,
            "n_trees": np.asarray(n_trees, dtype=np.int64),
            "depth": np.asarray(depth, dtype=np.int64),
            "shift": np.asarray(shift, dtype=np.int64),
            "denominator": np.asarray(denominator, dtype=np.float64),
            "n_features": np.asarray(self.n_features, dtype=np.int64),
            "offset": np.asarray(self.offset, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]]) -> CompiledForest:
        """The forest of :meth:`to_arrays`, after proving the kernel can walk it safely."""
        check_arrays(arrays)
        return cls(
            nodes=np.ascontiguousarray(arrays["nodes"], dtype=NODE_DTYPE),
            leaf_value=np.ascontiguousarray(arrays["leaf_value"], dtype=np.float64),
            missing_left=np.ascontiguousarray(arrays["missing_left"], dtype=np.uint8),
            n_trees=int(arrays["n_trees"]),
            depth=int(arrays["depth"]),
            shift=int(arrays["shift"]),
            denominator=float(arrays["denominator"]),
            n_features=int(arrays["n_features"]),
            offset=float(arrays["offset"]),
        )

    def _exponents(self, X: npt.ArrayLike) -> FloatArray:  # noqa: N803
        """``-(depths / denominator)`` per row, as sklearn computes it before ``2 ** ...``."""
        data = np.asarray(X)
        if data.dtype not in (np.float64, np.float32):
            if data.dtype.kind not in "biuf":
                raise ValueError(f"X must hold real numbers, got dtype {data.dtype}")
            data = data.astype(np.float32)
        if data.ndim == 1:
            data = data.reshape(1, -1)
        if data.ndim != 2 or data.shape[1] != self.n_features:
            raise ValueError(
                f"X has shape {np.shape(X)}, expected (n, {self.n_features}) or ({self.n_features},): "
                f"the forest was fitted on {self.n_features} features"
            )
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        out = np.empty(data.shape[0], dtype=np.float64)
        if data.shape[0] >= PARALLEL_MIN_ROWS:
            with _PARALLEL_LOCK:
                _score_parallel(data, self._kernel_args, out, _CHUNK_ROWS)
        else:
            _score_serial(data, self._kernel_args, out)
        return out

    def score_samples(self, X: npt.ArrayLike) -> FloatArray:  # noqa: N803
        """Equal to ``forest.score_samples(X)``: the lower, the more abnormal."""
        result: FloatArray = -(_TWO ** self._exponents(X))
        return result

    def decision_function(self, X: npt.ArrayLike) -> FloatArray:  # noqa: N803
        """Equal to ``forest.decision_function(X)`` (``score_samples - offset``); < 0 is an outlier."""
        # (-offset) - p is exactly (-p) - offset: both round the same real number.
        result: FloatArray = -self.offset - _TWO ** self._exponents(X)
        return result


def fast_offset(forest: IsolationForest, X_train: npt.ArrayLike, contamination: float) -> float:  # noqa: N803
    """The ``offset_`` sklearn's ``fit`` would set for a float ``contamination``, computed fast.

    Fit with ``contamination="auto"`` (which skips sklearn's scoring of the training set), then
    set ``forest.offset_`` (and ``forest.contamination``) to this value: it equals
    ``np.percentile(forest.score_samples(X_train), 100 * contamination)`` exactly.
    """
    if isinstance(contamination, str) or not 0.0 < contamination <= 0.5:
        raise ValueError(f"contamination must be a float in (0, 0.5], got {contamination!r}")
    scores = CompiledForest.from_sklearn(forest).score_samples(X_train)
    return float(np.percentile(scores, 100.0 * contamination))
