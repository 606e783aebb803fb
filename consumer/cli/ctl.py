"""``stockwatch ctl retrain|rollback VERSION|reload|status``: signed commands to the retrain workers.

Only acknowledgements signed with the control key count (the worker signs everything it says on
the status topic); a ``rejected`` one must also quote the digest of the bytes this ``ctl`` sent,
so a message that merely claims our ``command_id`` cannot end the wait.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import socket
import sys
import time
from typing import TYPE_CHECKING

import orjson

from consumer.wire.control import TERMINAL_ACKS, Ack, command_digest, message_is_signed, new_command

if TYPE_CHECKING:
    from config import Settings
    from consumer.adapters.kafka import StatusTail
    from consumer.cli import Subparsers

__all__ = ["cmd_ctl", "register"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_NOT_PROMOTED = 0, 1, 2, 3, 4


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``ctl`` command."""
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


def cmd_ctl(args: argparse.Namespace, settings: Settings) -> int:
    """Sign and publish a command; wait for its terminal acknowledgement unless ``--no-wait``."""
    secret, topics = settings.control.key, settings.kafka.topics
    if secret is None or not secret.get_secret_value():
        print("stockwatch ctl: set STOCKWATCH_CONTROL_KEY to sign commands", file=sys.stderr)
        return EXIT_USAGE
    if (args.action == "rollback") != (args.version is not None):
        print("stockwatch ctl: `rollback` takes a VERSION, the other actions none", file=sys.stderr)
        return EXIT_USAGE
    key = secret.get_secret_value().encode()
    cmd = new_command(
        args.action,
        key,
        args={"version": args.version} if args.version else {},
        issued_by=f"{getpass.getuser()}@{socket.gethostname()}",
    )
    wire = cmd.to_json()
    from consumer.adapters.kafka import JsonPublisher, StatusTail, ensure_worker_topics
    from consumer.ports import KafkaUnavailableError

    tail = None
    try:
        bootstrap = settings.kafka.bootstrap
        ensure_worker_topics(
            bootstrap, [topics.control, topics.status], replication_factor=topics.replication_factor
        )
        if not args.no_wait:
            tail = StatusTail(bootstrap, topics.status)
            tail.start()
        publisher = JsonPublisher(bootstrap, client_id="stockwatch-ctl")
        try:
            publisher.publish_bytes(topics.control, [(None, wire)])
        finally:
            publisher.close()
        print(orjson.dumps({"sent": cmd.command.value, "command_id": cmd.command_id}).decode(), flush=True)
        if tail is None:
            return EXIT_OK
        timeout_s = args.timeout or settings.control.ctl_timeout_s
        return _wait_for(tail, cmd.command_id, timeout_s, key=key, digest=command_digest(wire))
    except KafkaUnavailableError as exc:
        print(f"stockwatch ctl: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if tail is not None:
            tail.close()


def _wait_for(tail: StatusTail, command_id: str, timeout_s: float, *, key: bytes, digest: str) -> int:
    deadline = time.monotonic() + timeout_s
    unverified, accepted = 0, False
    while time.monotonic() < deadline:
        for msg in tail.poll(min(1.0, max(0.05, deadline - time.monotonic()))):
            if msg.get("type") != "command_ack" or msg.get("command_id") != command_id:
                continue
            status = msg.get("status")
            if not message_is_signed(msg, key):
                unverified += 1
                log.warning("ignored an unsigned or forged %s acknowledgement of %s", status, command_id)
                continue
            if status == Ack.REJECTED and (accepted or msg.get("digest") != digest):
                # another message with our id, or a replayed copy of ours after it was accepted
                log.warning("ignored the rejection of another message that claimed the id %s", command_id)
                continue
            accepted = accepted or status == Ack.ACCEPTED
            print(orjson.dumps(msg).decode(), flush=True)
            if status in (Ack.REJECTED, Ack.FAILED):
                return EXIT_FAILED
            if status == Ack.DONE and msg.get("command") == "retrain":
                promoted = (msg.get("result") or {}).get("status") == "promoted"
                return EXIT_OK if promoted else EXIT_NOT_PROMOTED
            if status in TERMINAL_ACKS:
                return EXIT_OK
    hint = (
        f" ({unverified} acknowledgement(s) were not signed with this STOCKWATCH_CONTROL_KEY: a worker "
        "without the key or with another one, or a forgery)"
        if unverified
        else ""
    )
    print(f"stockwatch ctl: no outcome for {command_id} within {timeout_s:g}s{hint}", file=sys.stderr)
    return EXIT_TIMEOUT
