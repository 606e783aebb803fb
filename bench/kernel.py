"""Benchmark: sklearn IsolationForest vs CompiledForest scoring, and fit + offset placement.

Run with ``python -m bench.kernel``. Prints Markdown tables and writes ``.bench/kernel.json``.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler

from detection.compiled_forest import CompiledForest, fast_offset

PARAMS = {"contamination": 0.1, "random_state": 42, "n_estimators": 100, "max_samples": "auto"}
BATCHES = (1, 10, 100, 1_000, 10_000)
FIT_SIZES = (100_000, 1_000_000)
MIN_CELL_SECONDS = 0.25
OUT = Path(".bench/kernel.json")


def realistic_rows(n: int, seed: int) -> np.ndarray:
    """7 inventory-like columns (stock, reorder levels, velocity, ...), unscaled."""
    rng = np.random.default_rng(seed)
    stock = rng.poisson(40, n).astype(float)
    min_stock = rng.integers(5, 20, n).astype(float)
    max_stock = min_stock + rng.integers(20, 200, n)
    velocity = rng.lognormal(1.0, 0.8, n)
    return np.column_stack(
        [
            stock,
            min_stock,
            max_stock,
            stock / max_stock,
            velocity,
            stock / (velocity + 1.0),
            rng.exponential(24.0, n),
        ]
    )


def items_per_second(fn: Callable[[np.ndarray], object], x: np.ndarray) -> float:
    """Warm up, then repeat until at least MIN_CELL_SECONDS have passed."""
    fn(x)
    fn(x)
    calls, start = 0, time.perf_counter()
    while True:
        fn(x)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= MIN_CELL_SECONDS:
            return calls * len(x) / elapsed


def scoring_table(
    forest: IsolationForest, compiled: CompiledForest, pool: np.ndarray
) -> list[dict[str, float]]:
    rows = []
    for batch in BATCHES:
        x = np.ascontiguousarray(pool[:batch])
        np.testing.assert_array_equal(compiled.decision_function(x), forest.decision_function(x))
        sk = items_per_second(forest.decision_function, x)
        time.sleep(0.3)  # let numba's worker threads stop spinning after a parallel batch
        ours = items_per_second(compiled.decision_function, x)
        rows.append(
            {"batch": batch, "sklearn_items_per_s": sk, "compiled_items_per_s": ours, "speedup": ours / sk}
        )
    return rows


def fit_table() -> list[dict[str, float]]:
    rows = []
    for n in FIT_SIZES:
        x = StandardScaler().fit_transform(realistic_rows(n, seed=n))
        start = time.perf_counter()
        reference = IsolationForest(**PARAMS).fit(x)
        sk_seconds = time.perf_counter() - start
        start = time.perf_counter()
        cheap = IsolationForest(**(PARAMS | {"contamination": "auto"})).fit(x)
        cheap.offset_ = fast_offset(cheap, x, 0.1)
        cheap.contamination = 0.1
        fast_seconds = time.perf_counter() - start
        assert cheap.offset_ == reference.offset_, (cheap.offset_, reference.offset_)
        rows.append(
            {
                "rows": n,
                "sklearn_fit_s": sk_seconds,
                "auto_fit_plus_fast_offset_s": fast_seconds,
                "speedup": sk_seconds / fast_seconds,
                "offset": float(reference.offset_),
            }
        )
    return rows


def main() -> None:
    train = StandardScaler().fit_transform(realistic_rows(10_000, seed=0))
    pool = StandardScaler().fit_transform(realistic_rows(10_000, seed=1))
    forest = IsolationForest(**PARAMS).fit(train)
    start = time.perf_counter()
    compiled = CompiledForest.from_sklearn(forest)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled.decision_function(pool[:1])
    compiled.decision_function(pool)  # serial and parallel kernels (loaded from numba's cache if warm)
    jit_s = time.perf_counter() - start

    scoring = scoring_table(forest, compiled, pool)
    print(
        f"\nIsolationForest {PARAMS}, 10k x 7 training rows; flatten {compile_s * 1e3:.1f} ms, jit/cache {jit_s:.2f} s\n"
    )
    print("| batch | sklearn items/s | compiled items/s | speedup |")
    print("|---:|---:|---:|---:|")
    for r in scoring:
        print(
            f"| {r['batch']:,} | {r['sklearn_items_per_s']:,.0f} | {r['compiled_items_per_s']:,.0f} "
            f"| {r['speedup']:,.0f}x |"
        )

    fitting = fit_table()
    print(
        "\n| rows | sklearn fit(contamination=0.1) | fit('auto') + fast_offset | speedup | offset_ (equal) |"
    )
    print("|---:|---:|---:|---:|---:|")
    for r in fitting:
        print(
            f"| {r['rows']:,} | {r['sklearn_fit_s']:.2f} s | {r['auto_fit_plus_fast_offset_s']:.2f} s "
            f"| {r['speedup']:.1f}x | {r['offset']:.17g} |"
        )

    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "params": PARAMS,
                "versions": {
                    "python": platform.python_version(),
                    "numpy": np.__version__,
                    "sklearn": sklearn.__version__,
                },
                "machine": platform.machine(),
                "flatten_ms": compile_s * 1e3,
                "jit_s": jit_s,
                "scoring": scoring,
                "fit": fitting,
            },
            indent=2,
        )
    )
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
