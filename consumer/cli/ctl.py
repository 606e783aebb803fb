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

from consumer.cli.argtypes import seconds
from consumer.cli.failures import kafka_unreachable
from consumer.wire.control import TERMINAL_ACKS, Ack, command_digest, message_is_signed, new_command

if TYPE_CHECKING:
    from config import Settings
    from consumer.adapters.kafka import StatusTail
    from consumer.cli import Subparsers

__all__ = ["cmd_ctl", "register"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_NOT_PROMOTED, EXIT_COALESCED = 0, 1, 2, 3, 4, 5


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``ctl`` command."""
    ctl = subparsers.add_parser(
        "ctl",
        parents=[common],
        help="send a signed command to the retrain workers",
        description="Exit status: 0 done; 1 rejected/failed, Kafka unreachable or a control/status "
        "topic missing; 2 usage; 3 no outcome before --timeout; 4 a retrain ran but its candidate "
        "was not promoted (gate rejection, too few items); 5 the retrain was coalesced (one was "
        "running, or within retrain_cooldown_s of the last: use --force).",
    )
    ctl.add_argument(
        "action",
        choices=["retrain", "rollback", "reload", "status"],
        help="retrain now, roll CURRENT back to VERSION, reload the model, or report the workers' state",
    )
    ctl.add_argument("version", nargs="?", default=None, help="rollback: the version to make CURRENT")
    ctl.add_argument(
        "--no-wait", action="store_true", help="publish and exit without waiting for the outcome"
    )
    ctl.add_argument(
        "--timeout",
        type=seconds,
        default=None,
        help="seconds for the whole command, Kafka connection included (default: settings ctl_timeout_s)",
    )
    ctl.add_argument(
        "--force", action="store_true", help="retrain: run even within the cooldown after the last retrain"
    )
    ctl.set_defaults(handler=cmd_ctl)


def _usage(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot make a command, checked before anything is signed or sent."""
    from detection.store_types import VERSION_EXAMPLE, VERSION_RE

    if (args.action == "rollback") != (args.version is not None):
        return "`rollback` takes a VERSION, the other actions none"
    if args.version is not None and not VERSION_RE.match(args.version):
        return f"{args.version!r} is not a version id (like {VERSION_EXAMPLE})"
    if args.force and args.action != "retrain":
        return "--force applies to `retrain` only"
    return None


def cmd_ctl(args: argparse.Namespace, settings: Settings) -> int:
    """Sign and publish a command; wait for its terminal acknowledgement unless ``--no-wait``."""
    secret, topics = settings.control.key, settings.kafka.topics
    problem = _usage(args)
    if problem is not None:
        print(f"stockwatch ctl: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if secret is None or not secret.get_secret_value():
        print("stockwatch ctl: set STOCKWATCH_CONTROL_KEY to sign commands", file=sys.stderr)
        return EXIT_USAGE
    timeout_s = args.timeout if args.timeout is not None else settings.control.ctl_timeout_s
    deadline = time.monotonic() + timeout_s
    key = secret.get_secret_value().encode()
    cmd_args: dict[str, object] = {"version": args.version} if args.version else {}
    if args.force:
        cmd_args["force"] = True
    cmd = new_command(
        args.action, key, args=cmd_args, issued_by=f"{getpass.getuser()}@{socket.gethostname()}"
    )
    wire = cmd.to_json()
    from consumer.adapters.kafka import JsonPublisher, StatusTail, existing_topics
    from consumer.ports import KafkaUnavailableError

    def left() -> float:
        return max(0.5, deadline - time.monotonic())

    tail = None
    try:
        broker = settings.kafka  # its address, security and client properties
        bootstrap = broker.bootstrap
        needed = {"STOCKWATCH_CONTROL_TOPIC": topics.control}
        if not args.no_wait:
            needed["STOCKWATCH_STATUS_TOPIC"] = topics.status
        present = existing_topics(broker, timeout_s=left())
        for setting, topic in needed.items():
            if topic not in present:  # never created here: a mistyped name would swallow the command
                print(
                    f"stockwatch ctl: topic {topic} ({setting}) does not exist on Kafka at {bootstrap}; "
                    "check the setting, or start a retrain worker (it creates it)",
                    file=sys.stderr,
                )
                return EXIT_FAILED
        if not args.no_wait:
            tail = StatusTail(broker, topics.status, timeout_s=left())
            tail.start(create=False)
        publisher = JsonPublisher(broker, client_id="stockwatch-ctl", timeout_s=left())
        try:
            publisher.publish_bytes(topics.control, [(None, wire)])
        finally:
            publisher.close()
        print(orjson.dumps({"sent": cmd.command.value, "command_id": cmd.command_id}).decode(), flush=True)
        if tail is None:
            return EXIT_OK
        return _wait_for(tail, cmd.command_id, deadline, timeout_s, key=key, digest=command_digest(wire),
                         max_age_s=settings.control.max_age_s)  # fmt: skip
    except KafkaUnavailableError as exc:
        print(f"stockwatch ctl: {' '.join(kafka_unreachable(settings, exc).split())}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if tail is not None:
            tail.close()


def _wait_for(
    tail: StatusTail,
    command_id: str,
    deadline: float,
    timeout_s: float,
    *,
    key: bytes,
    digest: str,
    max_age_s: float,
) -> int:
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
                reason = msg.get("reason") or "no reason given"
                print(
                    f"stockwatch ctl: {msg.get('command')} {command_id} {status}: {reason}", file=sys.stderr
                )
                return EXIT_FAILED
            if status == Ack.COALESCED:
                reason = msg.get("reason") or "another retrain covers it"
                print(f"stockwatch ctl: {command_id} was coalesced: {reason}", file=sys.stderr)
                return EXIT_COALESCED
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
    if accepted:  # a worker runs it: the outcome comes later, on the status topic
        later = "a worker accepted it and is still running it; its outcome will be on the status topic"
    else:  # it stays on the control topic: a worker that starts before it expires still runs it
        later = f"it stays pending: a worker that starts within {max_age_s:g}s of sending still runs it"
    print(
        f"stockwatch ctl: no outcome for {command_id} within {timeout_s:g}s{hint}; {later}",
        file=sys.stderr,
    )
    return EXIT_TIMEOUT
