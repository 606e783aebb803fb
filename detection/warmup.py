"""Run a served model's compiled kernels once on a scratch input, before it decides real events.

numba compiles a kernel at its first call (the ``default`` detector's decide kernel: ~40 s on a
fresh install) or loads it from its on-disk cache (``NUMBA_CACHE_DIR``). A warm-up where the model
is loaded moves that cost off the scoring loop. Pure compute: no I/O of its own, nothing kept.

``python -m detection.warmup`` warms the kernels with scratch models (trained here on synthetic
items), so an image build can ship numba's cache (see the Dockerfile).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from detection.detector import ChangeDetector
from detection.detector_training import train_detector
from detection.episode_kernel import warm_up_episodes
from detection.features import N_FEATURES
from detection.item_state import StateTable
from detection.items import StockItem
from detection.model import AnomalyModel, train_model
from detection.params import ForestParams
from detection.probe_kernel import warm_up_probe
from detection.scan_kernel import warm_up_scan
from detection.updates import UpdateBatch

__all__ = ["kernel_cache_dir", "kernels_cached", "kernels_compiled", "scratch_models", "warm_up"]


def kernels_compiled() -> bool:
    """True when this process already holds the decide kernel (a later warm-up is instant)."""
    from detection.decide_kernel import decide_rows

    return bool(decide_rows.signatures)


def kernels_cached() -> bool:
    """True when numba's cache holds an index of the decide kernel (it may still be stale)."""
    return any(Path(kernel_cache_dir()).rglob("decide_kernel.decide_rows-*.nbi"))


def kernel_cache_dir() -> str:
    """Where numba keeps compiled kernels: ``NUMBA_CACHE_DIR``, else ``__pycache__`` beside the code."""
    return os.environ.get("NUMBA_CACHE_DIR") or os.path.join(os.path.dirname(__file__), "__pycache__")


def warm_up(model: object) -> bool:
    """Decide a scratch batch with ``model`` (its results are dropped); False for another kind of model."""
    if isinstance(model, ChangeDetector):
        # a new item, then a change of it: every branch type of the kernel is specialised
        batch = UpdateBatch.from_columns(
            ["warm-up", "warm-up"],
            stock=[100.0, 40.0],
            min_=[10.0, 10.0],
            max_=[500.0, 500.0],
            price=[5.0, 5.0],
            occurred_at=[1_700_000_000.0, 1_700_000_060.0],
        )
        decisions, _ = model.decide_batch(StateTable(capacity=1), batch, lazy=True)
        decisions.complete(np.arange(len(batch)))  # the pending rows' scorer too
        warm_up_episodes()  # the alert episodes' kernel (consume's alert_mode "episodes")
        warm_up_probe()  # the state tables' index probe (consumer.scoring.state.table)
        warm_up_scan()  # the update records' scanner (consumer.scoring.update_decode)
        return True
    if isinstance(model, AnomalyModel):
        model.score(np.zeros((1, N_FEATURES)))
        return True
    return False


def scratch_models(n_items: int = 64) -> tuple[AnomalyModel, ChangeDetector]:
    """A tiny seed model and ``default`` detector on synthetic items: only for warming kernels."""
    rng = np.random.default_rng(0)
    stock, price = rng.uniform(50, 200, n_items), rng.uniform(5, 20, n_items)
    params = ForestParams(n_estimators=8)
    items = [StockItem(item_id=f"warm-{i}", stock_quantity=float(stock[i]), min_stock_level=50.0,
                       max_stock_level=200.0, price=float(price[i])) for i in range(n_items)]  # fmt: skip
    snapshot = UpdateBatch.from_columns([f"warm-{i}" for i in range(n_items)], stock=stock,
                                        min_=np.full(n_items, 50.0), max_=np.full(n_items, 200.0),
                                        price=price, occurred_at=np.full(n_items, 1_700_000_000.0))  # fmt: skip
    return train_model(items, params), train_detector(snapshot, params)


if __name__ == "__main__":
    import time

    started = time.perf_counter()
    for model in scratch_models():
        warm_up(model)
    print(f"scoring kernels compiled into {kernel_cache_dir()} in {time.perf_counter() - started:.1f} s")
