"""docs/consume.md lists what the code enumerates (no reason or metric silently missing from the docs)."""

from __future__ import annotations

import re
from pathlib import Path

from consumer.wire.dlq import DlqReason

CONSUME_DOC = Path(__file__).resolve().parents[3] / "docs" / "consume.md"


def _metric_row(name: str) -> str:
    rows = [line for line in CONSUME_DOC.read_text().splitlines() if line.startswith(f"| `{name}")]
    assert len(rows) == 1, f"docs/consume.md has {len(rows)} metrics rows for {name}"
    return rows[0]


def test_dlq_metric_row_lists_every_dlq_reason() -> None:
    row = _metric_row("stockwatch_dlq_total{reason}")
    values = row.split("|")[2].split("`reason` is", 1)[1]
    listed = set(re.findall(r"`([a-z_]+)`", values))
    assert listed == {reason.value for reason in DlqReason}
