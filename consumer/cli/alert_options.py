"""``stockwatch score``'s ``--alerts``, ``--alert-mode`` and ``--suppressions``: flags, checks, the writer.

The writer itself (:mod:`consumer.cli.score_alerts`) loads the scoring code, so it is imported only
when ``--alerts`` is given (``import consumer.cli`` stays free of numba and sklearn).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consumer.cli.files import open_in, open_out

if TYPE_CHECKING:
    from config import Settings
    from consumer.cli.score_alerts import AlertSink

__all__ = ["add_alert_options", "alert_flags_problem", "open_alert_sink"]

log = logging.getLogger(__name__)


def add_alert_options(score: argparse.ArgumentParser) -> None:
    score.add_argument("--alerts", default=None, metavar="FILE",
                       help="also write what consume publishes to the anomaly topic for this input (- for "
                       "stdout): with a default model in alert_mode episodes the episode events (open, "
                       "escalated, resolved), else one anomaly event per anomalous update (default: none)")  # fmt: skip
    score.add_argument("--alert-mode", choices=("episodes", "every-update"), default=None,
                       help="with --alerts (default: settings alert_mode, STOCKWATCH_ALERT_MODE)")  # fmt: skip
    score.add_argument("--suppressions", type=Path, default=None, metavar="FILE",
                       help="with --alerts: JSON lines of suppressions (as `suppressions list --json` prints) "
                       "that silence episodes as in consume (default: none)")  # fmt: skip


def alert_flags_problem(args: argparse.Namespace) -> str | None:
    """A usage mistake among the alert flags (None: none)."""
    if args.alerts is None:
        given = [flag for flag, value in (("--alert-mode", args.alert_mode), ("--suppressions", args.suppressions))
                 if value is not None]  # fmt: skip
        return (
            f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} to --alerts FILE only"
            if given
            else None
        )
    if args.alerts == "-" == args.output:
        return "--alerts - and --output - would interleave on stdout: send one of them to a file"
    return None


def open_alert_sink(
    args: argparse.Namespace, settings: Settings, stack: contextlib.ExitStack, *, changes: bool
) -> AlertSink | None:
    """The ``--alerts`` writer (None without the flag); ``changes``: the model is a ``default`` one."""
    if args.alerts is None:
        return None
    from consumer.cli.score_alerts import AlertSink, episode_context, read_suppressions

    scoring = settings.scoring
    mode = args.alert_mode or scoring.alert_mode
    if mode == "episodes" and not changes:
        log.warning("alert_mode=episodes, but a seed model has no per-item state: --alerts gets one "
                    "anomaly event per anomalous update, as consume publishes")  # fmt: skip
    suppressions: list[dict[str, Any]] = []
    if args.suppressions is not None:
        with open_in(str(args.suppressions), "--suppressions") as source:
            suppressions = read_suppressions(source)
    episodes = episode_context(mode, resolve_after=scoring.resolve_after,
                               renotify_after_s=scoring.renotify_after_s, suppressions=suppressions)  # fmt: skip
    return AlertSink(stack.enter_context(open_out(args.alerts, "--alerts")), episodes if changes else None)
