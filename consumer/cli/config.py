"""``stockwatch config``: the effective settings, each with where it came from (secrets masked)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import orjson

from config import effective_settings

if TYPE_CHECKING:
    from config import Settings
    from consumer.cli import Subparsers

__all__ = ["cmd_config", "register"]

EXIT_OK = 0


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``config`` command."""
    config = subparsers.add_parser(
        "config",
        parents=[common],
        help="print the effective settings and their sources (default, config file, environment)",
        description="Every setting with its value (keys and the Mongo password masked) and its source: "
        "`default`, the config file's path, or `env STOCKWATCH_<NAME>`.",
    )
    config.add_argument("--json", action="store_true", help="one JSON object keyed by setting name")
    config.set_defaults(handler=cmd_config)


def _cell(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'  # an empty value (peer_group_field: no grouping) is not a missing column
    return str(value)


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    """Print the settings as a table (SETTING, VALUE, SOURCE) or, with ``--json``, as JSON."""
    rows = effective_settings(settings)
    if args.json:
        out = {r.name: {"value": r.value, "source": r.source, "env": r.env} for r in rows}
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    table = [("SETTING", "VALUE", "SOURCE"), *((r.name, _cell(r.value), r.source) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    for name, value, source in table:
        print(f"{name:<{widths[0]}}  {value:<{widths[1]}}  {source}")
    return EXIT_OK
