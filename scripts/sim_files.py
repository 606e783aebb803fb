"""The files every simulator writes: S (items.jsonl), E (events.jsonl), L (labels.json), as `stockwatch eval` reads them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_sets"]


def write_sets(
    out: Path,
    snapshot: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    labels: Mapping[str, str],
) -> dict[str, int]:
    """Write S, E and L under ``out``; returns the counts of items, events and labelled errors."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, key, rows in (("items.jsonl", "items", snapshot), ("events.jsonl", "events", events)):
        with (out / name).open("w") as fh:
            lines = [json.dumps(r, separators=(",", ":")) + "\n" for r in rows]
            fh.writelines(lines)
        counts[key] = len(lines)
    (out / "labels.json").write_text(json.dumps(labels, indent=0))
    return counts | {"errors": len(labels)}
