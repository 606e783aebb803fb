"""How the default detector's alert budget calibrates: false alerts per 1,000 normal updates per budget.

python -m scripts.budget_table                                  # the sets below, the budgets below
python -m scripts.budget_table --sets A:7 J:41 --budgets 0.5 5 50 --items 400 --days 14

For each data set (a simulator shape and seed, ``scripts.eval_shapes.SHAPES``) and each budget B
the detector is trained with ``alert_budget_per_1000=B`` and the events replayed in order with
state. Columns: *synthetic* = model alerts per 1,000 on fresh normal motion of the snapshot (the
training generator with another seed: what the budget is calibrated on, stateless); *model FA* =
model alerts on the normal updates of the replay per 1,000 normal updates; *all FA* the same
with the data-quality rules' false alerts; recall and precision of all alerts.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np

from detection.detector import ChangeDetector
from detection.detector_training import train_detector
from detection.normal_motion import normal_transitions
from detection.updates import UpdateBatch, parse_updates
from scripts.eval_shapes import SHAPES
from scripts.inventory_sim import SimConfig, simulate

BUDGETS: Final = (0.1, 0.5, 1.0, 2.0, 5.0, 20.0, 50.0, 200.0, 500.0)
SETS: Final = ("A:7", "E:61", "J:41", "N:62")
FRESH_SEED: Final = 9_001
FRESH_STEPS: Final = 64  # x 1,000 items: 64,000 fresh normal updates


@dataclass(frozen=True)
class Row:
    synthetic: float
    model_fa: float
    all_fa: float
    recall: float
    precision: float


def measure(model: ChangeDetector, snapshot: UpdateBatch, updates: UpdateBatch, errors: np.ndarray[Any, Any],
            fresh: np.ndarray[Any, Any]) -> Row:  # fmt: skip
    """One budget's figures (see the module docstring)."""
    synthetic = 1000.0 * float(np.mean(model.score(fresh) < model.threshold))
    table = model.baseline(snapshot)
    alert = np.zeros(len(updates), bool)
    by_model = np.zeros(len(updates), bool)
    for start in range(0, len(updates), 2000):
        sl = slice(start, min(len(updates), start + 2000))
        batch = UpdateBatch(updates.item_ids[sl], updates.stock[sl], updates.min[sl], updates.max[sl],
                            updates.price[sl], updates.occurred_at[sl], updates.groups[sl], updates.event_ids[sl])  # fmt: skip
        decisions, changes = model.decide_batch(table, batch)
        changes.apply_to(table)
        alert[sl] = decisions.is_anomaly
        by_model[sl] = decisions.is_anomaly & ((decisions.rule_bits & decisions.rules.alert_mask) == 0)
    normal = ~errors
    n_normal = max(int(normal.sum()), 1)
    return Row(
        synthetic=synthetic,
        model_fa=1000.0 * float((by_model & normal).sum()) / n_normal,
        all_fa=1000.0 * float((alert & normal).sum()) / n_normal,
        recall=float((alert & errors).sum()) / max(int(errors.sum()), 1),
        precision=float((alert & errors).sum()) / max(int(alert.sum()), 1),
    )


def run_set(spec: str, budgets: tuple[float, ...], size: tuple[int, float] | None) -> list[tuple[float, Row]]:
    shape, _, seed = spec.partition(":")
    cfg = SimConfig(**SHAPES[shape])
    if size is not None:
        cfg = replace(cfg, n_items=size[0], days=size[1])
    if seed:
        cfg = replace(cfg, seed=int(seed))
    items, events, labels = simulate(cfg)
    snapshot, _ = parse_updates(items)
    updates, rejects = parse_updates(events)
    if rejects:
        raise SystemExit(f"{spec}: {len(rejects)} invalid events")
    errors = np.array([bool(labels.get(e or "")) for e in updates.event_ids])
    rows = []
    for b in budgets:
        model = train_detector(snapshot, alert_budget_per_1000=b)
        table = model.baseline(snapshot)
        start = table.gather(np.arange(len(table)))
        fresh, _ = normal_transitions(start, model.peers, np.random.default_rng(FRESH_SEED), FRESH_STEPS)
        rows.append((b, measure(model, snapshot, updates, errors, fresh)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sets", nargs="*", default=list(SETS), help="SHAPE:SEED (shapes of scripts.eval_shapes)"
    )
    parser.add_argument("--budgets", nargs="*", type=float, default=list(BUDGETS))
    parser.add_argument(
        "--items", type=int, default=1000, help="items per data set (0: the shape's own, slow)"
    )
    parser.add_argument("--days", type=float, default=14.0, help="days per data set (with --items)")
    args = parser.parse_args(argv)
    print("| data set | B | synthetic | model FA | all FA | recall | precision |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.sets:
        size = (args.items, args.days) if args.items > 0 else None
        for b, r in run_set(spec, tuple(args.budgets), size):
            print(f"| {spec} | {b:g} | {r.synthetic:.2f} | {r.model_fa:.2f} | {r.all_fa:.2f} | "
                  f"{r.recall:.3f} | {r.precision:.3f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
