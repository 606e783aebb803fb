"""``stockwatch retrain-worker``, ``stockwatch ctl retrain|rollback VERSION|reload|status``, ``stockwatch scan``.

Only argparse is imported here; the implementation (:mod:`consumer.retrain_commands`, which
loads Kafka, Mongo and the detection core) is imported when one of the commands runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consumer.cli import Subparsers
    from consumer.settings import Settings

__all__ = ["cmd_ctl", "cmd_retrain_worker", "cmd_scan", "register"]


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the retrain-worker, ctl and scan commands."""
    worker = subparsers.add_parser(
        "retrain-worker", parents=[common], help="keep the model fresh (control topic, schedule)"
    )
    worker.add_argument("--run-for", type=float, default=None, help=argparse.SUPPRESS)  # tests and demos
    worker.set_defaults(handler=cmd_retrain_worker)

    ctl = subparsers.add_parser(
        "ctl",
        parents=[common],
        help="send a signed command to the retrain workers",
        description="Exit status: 0 done/coalesced, 1 rejected/failed, 2 usage, 3 no outcome before "
        "--timeout, 4 a retrain ran but its candidate was not promoted (gate rejection, too few items).",
    )
    ctl.add_argument("action", choices=["retrain", "rollback", "reload", "status"])
    ctl.add_argument("version", nargs="?", default=None, help="rollback: the version to make CURRENT")
    ctl.add_argument(
        "--no-wait", action="store_true", help="publish and exit without waiting for the outcome"
    )
    ctl.add_argument(
        "--timeout", type=float, default=None, help="seconds to wait (default: settings ctl_timeout_s)"
    )
    ctl.set_defaults(handler=cmd_ctl)

    scan = subparsers.add_parser(
        "scan", parents=[common], help="score the whole Mongo inventory with the current model"
    )
    scan.add_argument(
        "--publish", action="store_true", help="publish anomalies to the anomaly topic instead of stdout"
    )
    scan.set_defaults(handler=cmd_scan)


def cmd_retrain_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run the retrain worker until SIGTERM/SIGINT."""
    from consumer import retrain_commands

    return retrain_commands.cmd_retrain_worker(args, settings)


def cmd_ctl(args: argparse.Namespace, settings: Settings) -> int:
    """Sign, publish and (by default) await a control command."""
    from consumer import retrain_commands

    return retrain_commands.cmd_ctl(args, settings)


def cmd_scan(args: argparse.Namespace, settings: Settings) -> int:
    """Score the Mongo inventory with the current model."""
    from consumer import retrain_commands

    return retrain_commands.cmd_scan(args, settings)
