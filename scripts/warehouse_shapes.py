"""Named shapes of the second generator (``scripts/warehouse_sim.py``) for ``scripts.eval_shapes``.

Fixed before their first run and never tuned on; vary ``--seeds`` as well.
"""

from __future__ import annotations

from typing import Any, Final

WAREHOUSE_SHAPES: Final[dict[str, dict[str, Any]]] = {
    "W1": {"seed": 101},
    "W2": {"seed": 102, "n_skus": 900, "n_warehouses": 2, "slow_share": 0.5, "full_sync": 1.0, "timed_share": 0.0,
           "error_rate": 0.008},
    "W3": {"seed": 103, "n_skus": 350, "n_warehouses": 5, "post_hours": 1.0, "oos_share": 0.15, "shrink": 0.03,
           "count_days": 10.0, "error_rate": 0.015},
    "W4": {"seed": 104, "demand_scale": 3.0, "reprice_share": 0.1, "promo_share": 0.08, "reset_share": 0.6,
           "new_share": 0.08, "timed_share": 1.0},
    "W5": {"seed": 105, "n_departments": 4, "lead_days": 8.0, "short_ship": 0.4, "post_hours": 6.0, "full_sync": 0.5,
           "days": 50.0, "n_skus": 400},
}  # fmt: skip
