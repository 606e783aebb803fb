"""A model report as one PNG: the score histogram with the threshold, and each feature's distribution.

Rendered with matplotlib's Agg backend (no display needed) into ``report.png`` inside the
version's directory. The file is informational: it is not listed in the store's checksummed
manifest, is never loaded, and goes when retention removes the version.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detection import FEATURE_NAMES

__all__ = ["REPORT_FILE", "render_report"]

REPORT_FILE = "report.png"
MAX_ROWS = 200_000  # histogram rows drawn at most (a uniform subsample beyond)


def render_report(
    path: Path,
    *,
    scores: npt.NDArray[np.float64],
    features: npt.NDArray[np.float64],
    threshold: float,
    title: str,
) -> Path:
    """Write the report PNG to ``path`` atomically (temp file + rename) and return ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if scores.shape[0] > MAX_ROWS:
        idx = np.random.default_rng(0).choice(scores.shape[0], MAX_ROWS, replace=False)
        scores, features = scores[idx], features[idx]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7), constrained_layout=True)
    ax = axes[0][0]
    ax.hist(scores, bins=50, color="#4477aa")
    ax.axvline(threshold, color="#cc3311", linestyle="--", label=f"threshold {threshold:g}")
    rate = float(np.mean(scores < threshold)) if scores.size else 0.0
    ax.set_title(f"scores (anomaly rate {rate:.1%})")
    ax.legend(loc="upper left", fontsize=8)
    for j, name in enumerate(FEATURE_NAMES):
        ax = axes[(j + 1) // 4][(j + 1) % 4]
        column = features[:, j]
        ax.hist(column[np.isfinite(column)], bins=50, color="#228833", log=True)  # log counts: outliers show
        ax.set_title(name, fontsize=9)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        fig.savefig(tmp, format="png", dpi=80)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
