"""Evaluate the seed and default detectors on simulator files (S, E, L) and print the table.

python -m scripts.eval_detectors --items S --events E --labels L
python -m scripts.eval_detectors --simulate --seed 7 --items-count 3000   # generate, then evaluate
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from detection.evaluation import evaluate, format_table


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=Path)
    parser.add_argument("--events", type=Path)
    parser.add_argument("--labels", type=Path)
    parser.add_argument(
        "--simulate", action="store_true", help="generate S, E, L first (scripts.inventory_sim)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--items-count", type=int, default=3000)
    parser.add_argument(
        "--budget", type=float, default=None, help="alert_budget_per_1000 of the default detector"
    )
    args = parser.parse_args(argv)
    if args.simulate:
        from scripts.inventory_sim import SimConfig, write

        out = Path(tempfile.mkdtemp(prefix="stockwatch-sim-"))
        print(json.dumps(write(out, SimConfig(seed=args.seed, n_items=args.items_count))), file=sys.stderr)
        args.items, args.events, args.labels = out / "items.jsonl", out / "events.jsonl", out / "labels.json"
    if not (args.items and args.events and args.labels):
        parser.error("give --items, --events and --labels, or --simulate")
    options = {} if args.budget is None else {"alert_budget_per_1000": args.budget}
    labels = json.loads(args.labels.read_text())
    results = evaluate(read_jsonl(args.items), read_jsonl(args.events), labels, **options)
    print(format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
