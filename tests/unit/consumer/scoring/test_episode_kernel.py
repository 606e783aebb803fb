"""advance_compiled (the numba kernel) makes the transitions and records advance (Python) makes."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.scoring.episodes import EPISODE_DTYPE, EpisodePolicy, Kind, advance, advance_compiled


def prior(rng: np.random.Generator, n_items: int) -> np.ndarray:
    """Episodes of every status (none, open, silent), some near their counters' limits."""
    eps = np.zeros(n_items, EPISODE_DTYPE)
    status = rng.integers(0, 3, n_items)
    live = status > 0
    eps["status"] = status
    eps["opened_offset"] = np.where(live, rng.integers(0, 1000, n_items), 0)
    eps["first_seen"] = np.where(live, 1_764_590_000.0 + rng.random(n_items) * 500, 0.0)
    eps["last_seen_s"] = np.where(live, rng.random(n_items) * 300, 0.0)
    eps["notified_s"] = np.where(live, rng.random(n_items) * 200, 0.0)
    eps["occurrences"] = np.where(live, rng.choice([1, 5, 2**32 - 1], n_items), 0)
    eps["normal_run"] = np.where(live, rng.choice([0, 1, 2, 2**16 - 1], n_items), 0)
    eps["max_level"] = np.where(live, rng.integers(0, 4, n_items), 0)
    return eps


@pytest.mark.parametrize("seed", range(40))
def test_the_kernel_advances_as_the_python_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items, n = int(rng.integers(1, 30)), int(rng.integers(0, 400))
    policy = EpisodePolicy(int(rng.integers(1, 5)), float(rng.choice([0.0, 30.0, 120.0])))
    item_of = rng.integers(0, n_items, n).astype(np.intp)
    anomalous = rng.random(n) < rng.choice([0.05, 0.3, 0.7])
    levels = np.where(anomalous, rng.integers(-1, 4, n), -1).astype(np.int8)
    at = (
        1_764_590_400.0 + np.cumsum(rng.random(n) * 20) - rng.random(n) * rng.choice([0.0, 60.0])
    )  # some late
    offsets = np.arange(5000, 5000 + n, dtype=np.int64)
    quiet = rng.random(n) < rng.choice([0.0, 0.2])  # a suppression: a fixed answer per row
    eps = prior(rng, n_items)
    want_eps, got_eps = eps.copy(), eps.copy()
    want = advance(want_eps, item_of, anomalous, levels, at, offsets, policy, lambda r: bool(quiet[r]))
    got = advance_compiled(got_eps, item_of, anomalous, levels, at, offsets, policy, lambda r: bool(quiet[r]))
    assert got == want
    assert got_eps.tobytes() == want_eps.tobytes()
    assert all(
        type(a.row) is type(b.row) is int and type(a.at) is type(b.at) is float
        for a, b in zip(got, want, strict=True)
    )


def test_the_kernel_covers_every_kind() -> None:
    """The random cases above meet every transition kind (else they would prove little)."""
    seen: set[Kind] = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n_items, n = 3, 300
        item_of = rng.integers(0, n_items, n).astype(np.intp)
        anomalous = rng.random(n) < 0.4
        levels = np.where(anomalous, rng.integers(0, 4, n), -1).astype(np.int8)
        at = 1_764_590_400.0 + np.arange(n) * 10.0
        found = advance_compiled(np.zeros(n_items, EPISODE_DTYPE), item_of, anomalous, levels, at,
                                 np.arange(n, dtype=np.int64), EpisodePolicy(2, 60.0),
                                 lambda r: r % 17 == 0)  # fmt: skip
        seen |= {t.kind for t in found}
    assert seen == set(Kind)
