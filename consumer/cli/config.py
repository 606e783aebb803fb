"""``stockwatch config``: the effective settings, each with where it came from (secrets masked)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from config import effective_settings

if TYPE_CHECKING:
    from config import Settings
    from config.rules import RuleSpec
    from consumer.cli import Subparsers

__all__ = ["cmd_config", "no_rules_warning", "register", "rules_summary"]

EXIT_OK = 0
MAX_CELL = 72  # a longer value is cut in the table (--json has it whole): the table stays narrow


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``config`` command."""
    config = subparsers.add_parser(
        "config",
        parents=[common],
        help="print the effective settings and their sources (default, config file, environment)",
        description="Every setting with its value (keys and the Mongo password masked) and its source: "
        "`default`, the config file's path, or `env STOCKWATCH_<NAME>`. Long values are summarised in "
        "the table (the rules as a count and names); --json prints them whole. Exit status: 0 printed; "
        "2 a setting is invalid (each mistake on its own line).",
    )
    config.add_argument("--json", action="store_true", help="one JSON object keyed by setting name")
    config.set_defaults(handler=cmd_config)


def rules_summary(rules: Sequence[RuleSpec] | None) -> str:
    """The rules table in a few words: the built-in table, no rules at all, or a count and the names
    that fit in :data:`MAX_CELL` characters."""
    if rules is None:
        from detection.rules import DEFAULT_RULES  # numpy only: `config` stays light

        return f"{len(DEFAULT_RULES)} built-in rules (no [[rules]] table set)"
    enabled = [r.name + (" (hint)" if r.severity < 50 else "") for r in rules if r.enabled]
    off = len(rules) - len(enabled)
    if not enabled:
        return "no rules: the table is empty" + (f" ({off} disabled)" if off else "") + ", nothing is checked"
    head = f"{len(enabled)} rules" + (f", {off} disabled" if off else "") + ": "
    shown = 0  # the names that fit in the table's cell, then how many more
    while (
        shown < len(enabled) and len(head + ", ".join(enabled[: shown + 1])) + len(" (+99 more)") <= MAX_CELL
    ):
        shown += 1
    more = len(enabled) - shown
    return head + ", ".join(enabled[:shown]) + (f" (+{more} more)" if more else "")


def no_rules_warning(settings: Settings) -> str | None:
    """The start-up WARNING when the settings name an empty rules table (None when they do not)."""
    rules = settings.models.rules
    if rules is None or any(r.enabled for r in rules):
        return None
    (source,) = (row.source for row in effective_settings(settings) if row.name == "rules")
    return (
        f"no rules: the rules table ({source}) is empty, so models trained with these settings check no "
        "data-quality rules (negative stock, min >= max, ...); unset it for the built-in rules"
    )


def _cell(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'  # an empty value (peer_group_field: no grouping) is not a missing column
    text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 12].rstrip(", ") + " ... (--json)"


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    """Print the settings as a table (SETTING, VALUE, SOURCE) or, with ``--json``, as JSON."""
    rows = effective_settings(settings)
    if args.json:
        out = {r.name: {"value": r.value, "source": r.source, "env": r.env} for r in rows}
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    cells = {r.name: _cell(r.value) for r in rows} | {"rules": _cell(rules_summary(settings.models.rules))}
    table = [("SETTING", "VALUE", "SOURCE"), *((r.name, cells[r.name], r.source) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    for name, value, source in table:
        print(f"{name:<{widths[0]}}  {value:<{widths[1]}}  {source}".rstrip())
    return EXIT_OK
