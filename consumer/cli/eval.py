"""``stockwatch eval``: the seed and default detectors side by side on a labelled history.

Trains each detector on the snapshot S (``--items``), replays the change events E (``--events``)
in order with per-item state, and judges the decisions with the labels L (``--labels``: a JSON
object ``{event_id: kind}``, every other event normal): average precision, ROC-AUC, precision and
recall at the default threshold, alerts per 1,000 updates and ROC-AUC per error kind
(:mod:`detection.evaluation`). A table, or one JSON object with ``--json``
(``docs/schemas/eval-report.schema.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from consumer.cli.config import no_rules_warning
from consumer.cli.files import fail, open_file

if TYPE_CHECKING:
    from config import Settings
    from consumer.cli import Subparsers

__all__ = ["cmd_eval", "register"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_USAGE = 0, 2
MAX_LABEL_BYTES = 256 << 20


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``eval`` command."""
    ev = subparsers.add_parser(
        "eval",
        parents=[common],
        help="seed vs default detector on labelled history",
        description="Train each detector on the snapshot S (--items), replay the change events E (--events) "
        "in order with per-item state, and judge the decisions with the labels L (--labels: a JSON object "
        "{event_id: kind}, every other event normal): average precision, ROC-AUC, precision and recall at "
        "the default threshold, alerts per 1,000 updates and ROC-AUC per kind. The rules are the table "
        "`train` would bind; nothing is published. scripts/inventory_sim.py writes an example S, E and L. "
        "Exit status: 0 evaluated; 2 usage (a bad flag or setting, an unreadable or invalid file, labels "
        "that leave no errors or no normal events).",
    )
    ev.add_argument(
        "--items", type=Path, required=True, help="snapshot S: JSON lines, one item state per line"
    )
    ev.add_argument("--events", type=Path, required=True, help="change events E in order: JSON lines")
    ev.add_argument("--labels", type=Path, required=True, help='labels L: JSON object {"event_id": "kind"}')
    ev.add_argument(
        "--detector",
        choices=("seed", "default"),
        action="append",
        default=None,
        help="evaluate only this detector (repeatable; default: both)",
    )
    ev.add_argument(
        "--alert-budget-per-1000",
        type=float,
        default=None,
        help="the default detector's alerts per 1,000 normal updates (default: settings alert_budget_per_1000)",
    )
    ev.add_argument("--group-field", default=None, metavar="FIELD",
                    help='the default detector\'s peer-group field, "" or none for no grouping '
                    "(default: settings peer_group_field)")  # fmt: skip
    ev.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    ev.set_defaults(handler=cmd_eval)  # fmt: skip


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    """Evaluate and print; exit 2 on unusable input (which line or label is said on stderr)."""
    from consumer.cli.changes import check_budget, group_field_of

    try:
        if args.alert_budget_per_1000 is not None:
            check_budget(args.alert_budget_per_1000)
        group = group_field_of(args, settings)  # the field `train` would bind
        items = _jsonl(args.items, "--items")
        events = _jsonl(args.events, "--events")
        labels = _labels(args.labels, "--labels")
    except (OSError, ValueError) as exc:
        fail(f"eval: {exc}")
        return EXIT_USAGE
    from detection.evaluation import evaluate, format_table

    rules = settings.models.rule_table()  # the table `train` would bind
    if "default" in (args.detector or ("default",)) and (warning := no_rules_warning(settings)):
        log.warning(warning)
    options: dict[str, Any] = {"group_field": group} | ({} if rules is None else {"rules": rules})
    if args.alert_budget_per_1000 is not None:
        options["alert_budget_per_1000"] = args.alert_budget_per_1000
    detectors = tuple(dict.fromkeys(args.detector or ("seed", "default")))
    try:
        results = evaluate(items, events, labels, detectors=detectors, **options)
    except ValueError as exc:  # invalid events, too few items, no errors or no normal events, ...
        fail(f"eval: {exc}")
        return EXIT_USAGE
    if args.json:
        report = {name: dataclasses.asdict(r) for name, r in results.items()}
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_APPEND_NEWLINE))
    else:
        print(format_table(results))
    return EXIT_OK


def _jsonl(path: Path, flag: str) -> list[dict[str, Any]]:
    out = []
    with open_file(path, flag) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {lineno}: invalid JSON ({exc})") from None
            if not isinstance(doc, dict):
                raise ValueError(f"{path}: line {lineno}: expected a JSON object")
            out.append(doc)
    return out


def _labels(path: Path, flag: str) -> dict[str, str]:
    with open_file(path, flag) as fh:
        data = fh.read(MAX_LABEL_BYTES + 1)
    if len(data) > MAX_LABEL_BYTES:
        raise ValueError(f"{path}: over {MAX_LABEL_BYTES} bytes")
    try:
        labels = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(labels, dict) or not all(isinstance(v, str) and v for v in labels.values()):
        raise ValueError(f'{path}: expected a JSON object {{"event_id": "kind"}} with non-empty kinds')
    return labels
