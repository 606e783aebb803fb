"""``stockwatch keygen``: print a new random key for ``STOCKWATCH_CONTROL_KEY`` / ``STOCKWATCH_MODEL_SIGNING_KEY``."""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from consumer.cli.failures import EXIT_PIPE
from consumer.cli.files import drop_stdout

if TYPE_CHECKING:
    from consumer.cli import Subparsers

__all__ = ["new_key", "register"]

KEY_BYTES = 32  # config.keys.MIN_KEY_BYTES: 256 random bits


def new_key() -> str:
    """32 random bytes, URL-safe base64 (43 characters, safe in a shell and an env file)."""
    return secrets.token_urlsafe(KEY_BYTES)


class _PrintKey(argparse.Action):
    """Prints a key while the arguments are parsed (like ``--version``), before the settings are
    read: the key in the environment may be the short one this command is run to replace."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> NoReturn:
        try:
            print(new_key(), flush=True)
        except BrokenPipeError:  # `stockwatch keygen | head -c0`: the reader left, as main() treats it
            drop_stdout()
            parser.exit(EXIT_PIPE)
        except OSError as exc:  # stdout on a full disk: one line, and nothing left to flush at exit
            drop_stdout()
            parser.exit(1, f"stockwatch keygen: {exc.strerror or exc} writing stdout\n")
        parser.exit(0)


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``keygen`` command."""
    keygen = subparsers.add_parser(
        "keygen",
        parents=[common],
        help="print a new random key for STOCKWATCH_CONTROL_KEY or STOCKWATCH_MODEL_SIGNING_KEY",
        description="Prints 32 random bytes, URL-safe base64: export STOCKWATCH_CONTROL_KEY=$(stockwatch keygen)",
    )
    # A positional with nargs="?" has its action called even when absent: that is the trigger.
    keygen.add_argument("_keygen", nargs="?", action=_PrintKey, help=argparse.SUPPRESS)
