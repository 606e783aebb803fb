"""The ``stockwatch`` command line: a thin argparse dispatcher over one module per command group.

Each command group module exposes ``register(subparsers, common)``: it adds its sub-commands
(``common`` is a parent parser with the options every command takes) and sets
``handler=fn`` where ``fn(args, settings) -> int`` returns the exit status. To add a group
(``consume``, ``retrain-worker``, ``ctl``, ``scan`` …) append its ``register`` to
:data:`COMMAND_GROUPS`. Settings are read once, here, and handed to the handler; logging is
configured only here (JSON lines on stderr, :mod:`consumer.cli.logs`). Whatever a user can cause
ends as one line and an exit status (:mod:`consumer.cli.failures`); a bug keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from config import Settings, SettingsError, load_settings, secret_values
from consumer.cli import (
    config,
    consume,
    ctl,
    eval,
    feedback,
    keygen,
    models,
    notify,
    scan,
    seed,
    suppressions,
    versions,
    worker,
)
from consumer.cli.failures import EXIT_FAILED, EXIT_PIPE, EXIT_STATUS_HELP, explain
from consumer.cli.files import drop_stdout
from consumer.cli.logs import configure_logging

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["COMMAND_GROUPS", "Handler", "build_parser", "configure_logging", "main"]

Handler = Callable[[argparse.Namespace, Settings], int]
"""What a sub-command runs: gets the parsed arguments and the settings, returns the exit status."""

COMMAND_GROUPS: list[Callable[[Subparsers, argparse.ArgumentParser], None]] = [
    models.register,
    versions.register,
    eval.register,
    consume.register,
    worker.register,
    ctl.register,
    feedback.register,
    suppressions.register,
    notify.register,
    scan.register,
    seed.register,
    keygen.register,
    config.register,
]
"""One ``register(subparsers, common)`` per command group module, in ``--help`` order."""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stockwatch")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The full parser: global options plus every registered command group."""
    parser = argparse.ArgumentParser(
        prog="stockwatch",
        description=f"Streaming anomaly detection for warehouse inventory. {EXIT_STATUS_HELP}",
    )
    level_help = "log level (default: STOCKWATCH_LOG_LEVEL, INFO)"
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=None, type=str.upper, help=level_help)
    parser.add_argument(
        "--version", action="version", version=f"stockwatch {_version()}", help="print the version and exit"
    )
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given after the sub-command it wins, absent it leaves the global value alone.
    common.add_argument(
        "--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS, type=str.upper, help=level_help
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMAND_GROUPS:
        register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stockwatch`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:  # one line per mistake, naming the variable or key; no values of secrets
        configure_logging(args.log_level or "INFO")
        for problem in exc.problems:
            print(f"stockwatch: {problem}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(args.log_level or settings.logs.level, secret_values(settings))  # the flag wins
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except KeyboardInterrupt:  # Ctrl-C: the user stopped it, not a bug; the services handle SIGINT themselves
        print(f"stockwatch {_command_name(args)}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `stockwatch score ... | head`: the reader left, not an error of ours
        drop_stdout()
        return EXIT_PIPE
    except Exception as exc:  # last resort: what a user can cause is one line; a bug keeps its traceback
        known = explain(exc, settings)
        if known is None and isinstance(exc, OSError):  # a full disk, an I/O error: not a bug of ours
            known = f"{exc.strerror or exc}{_where(exc)}", EXIT_FAILED
        if known is None:
            raise
        message, status = known
        one_line = " ".join(message.split())  # a client's multi-line message stays one line
        print(f"stockwatch {_command_name(args)}: {one_line}", file=sys.stderr, flush=True)
        return status


def _where(exc: OSError) -> str:
    """`` (FILE)``, or `` writing stdout`` when stdout is what failed (then it is dropped)."""
    if exc.filename:
        return f" ({exc.filename})"
    try:
        sys.stdout.flush()
    except OSError:
        drop_stdout()
        return " writing stdout"
    return ""


def _command_name(args: argparse.Namespace) -> str:
    sub = getattr(args, "models_command", None)
    return f"{args.command} {sub}" if sub else str(args.command)


if __name__ == "__main__":
    sys.exit(main())
