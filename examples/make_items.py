"""Writes examples/items.jsonl: the demo's normal inventory (scripts/demo_data.py), seeded, 400 items.

    python -m examples.make_items [--count N] [--seed S] [--out FILE]

`stockwatch seed --items examples/items.jsonl` (the compose file's ``seed`` service) loads it
into the Mongo inventory, so the retrain worker has items to train a first model on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import orjson

from scripts.demo_data import normal_item

OUT = Path(__file__).resolve().parent / "items.jsonl"


def items_jsonl(count: int = 400, seed: int = 14) -> bytes:
    """``count`` items ``sku-00000``… as JSON lines."""
    rng = np.random.default_rng(seed)
    return b"".join(orjson.dumps(normal_item(rng, f"sku-{i:05d}")) + b"\n" for i in range(count))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=400, help="how many items")
    parser.add_argument("--seed", type=int, default=14, help="random seed")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write")
    args = parser.parse_args()
    args.out.write_bytes(items_jsonl(args.count, args.seed))


if __name__ == "__main__":
    main()
