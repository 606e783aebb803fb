"""Signed control commands (``stockwatch.control``) and their verification — pure, no I/O.

A command is a JSON object::

    {"command": "retrain" | "rollback" | "reload" | "status",
     "command_id": "<unique>", "issued_at": "<ISO 8601 UTC>", "issued_by": "<who>",
     "args": {...},                      # e.g. {"version": "..."} for rollback
     "signature": "<hex HMAC-SHA256>"}

The signature is HMAC-SHA256 with ``STOCKWATCH_CONTROL_KEY`` over the *canonical JSON* of every
other field: orjson with sorted keys, no whitespace (:func:`canonical_bytes`). Verification
(:func:`verify`) checks, in order: JSON shape, a key is configured, the signature, the age of
``issued_at`` (older than ``max_age_s`` or more than ``max_age_s`` in the future is refused).
Replay protection needs durable state (the ``command_id`` seen before) and lives in
:mod:`consumer.adapters.mongo`; :func:`verify` only says whether the command itself is acceptable.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "Ack",
    "Command",
    "CommandName",
    "CommandRejectedError",
    "canonical_bytes",
    "new_command",
    "parse_command",
    "sign",
    "verify",
]

MAX_COMMAND_BYTES = 16_384


class CommandName(StrEnum):
    """The commands the retrain worker understands."""

    RETRAIN = "retrain"
    ROLLBACK = "rollback"
    RELOAD = "reload"
    STATUS = "status"


class Ack(StrEnum):
    """Outcomes published on the status topic (``type: "command_ack"``) for a command."""

    ACCEPTED = "accepted"  # will run (non-terminal)
    COALESCED = "coalesced"  # folded into a running or just finished retrain (terminal)
    REJECTED = "rejected"  # refused: signature, age, replay, unknown command, bad args (terminal)
    DONE = "done"  # ran and succeeded (terminal)
    FAILED = "failed"  # ran and failed (terminal)


TERMINAL_ACKS = frozenset({Ack.COALESCED, Ack.REJECTED, Ack.DONE, Ack.FAILED})


class Command(BaseModel):
    """A verified (or to-be-signed) control command."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: CommandName
    command_id: str = Field(min_length=1, max_length=128)
    issued_at: datetime
    issued_by: str = Field(default="unknown", max_length=256)
    args: dict[str, Any] = Field(default_factory=dict)
    signature: str | None = None

    def unsigned_fields(self) -> dict[str, Any]:
        """Every field but the signature, JSON-ready (what is signed)."""
        return self.model_dump(mode="json", exclude={"signature"})

    def to_json(self) -> bytes:
        """The wire form (signature included)."""
        return orjson.dumps(self.model_dump(mode="json"))


class CommandRejectedError(ValueError):
    """The command must not be executed. ``command_id`` when it could be read, ``reason`` why."""

    def __init__(self, reason: str, *, command_id: str | None = None, command: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command_id = command_id
        self.command = command


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    """The bytes that are signed: compact JSON with sorted keys (orjson OPT_SORT_KEYS)."""
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def _mac(key: bytes, fields: dict[str, Any]) -> str:
    return hmac.new(key, canonical_bytes(fields), hashlib.sha256).hexdigest()


def sign(command: Command, key: bytes) -> Command:
    """The command with its signature set."""
    if not key:
        raise ValueError("the control key is empty; set STOCKWATCH_CONTROL_KEY")
    return command.model_copy(update={"signature": _mac(key, command.unsigned_fields())})


def new_command(
    name: CommandName | str,
    key: bytes,
    *,
    args: dict[str, Any] | None = None,
    issued_by: str = "stockwatch-ctl",
    now: datetime | None = None,
) -> Command:
    """A fresh, signed command with a random ``command_id`` and ``issued_at`` = now (UTC)."""
    cmd = Command(
        command=CommandName(name),
        command_id=uuid.uuid4().hex,
        issued_at=(now or datetime.now(UTC)),
        issued_by=issued_by,
        args=args or {},
    )
    return sign(cmd, key)


def _peek(raw: object, field: str) -> str | None:
    value = raw.get(field) if isinstance(raw, dict) else None
    return value[:128] if isinstance(value, str) else None


def parse_command(value: bytes | None) -> dict[str, Any]:
    """Decode the wire bytes into a JSON object, or raise :class:`CommandRejectedError`."""
    if not value:
        raise CommandRejectedError("empty message")
    if len(value) > MAX_COMMAND_BYTES:
        raise CommandRejectedError(f"message of {len(value)} bytes exceeds {MAX_COMMAND_BYTES}")
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise CommandRejectedError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CommandRejectedError(f"expected a JSON object, got {type(raw).__name__}")
    return raw


def verify(raw: dict[str, Any], key: bytes | None, *, now: datetime, max_age_s: float) -> Command:
    """Check shape, signature and age of a decoded command; raise :class:`CommandRejectedError` if bad."""
    cid, name = _peek(raw, "command_id"), _peek(raw, "command")
    signature = raw.get("signature")
    if not key:
        raise CommandRejectedError("no control key configured on the worker", command_id=cid, command=name)
    if not isinstance(signature, str) or not signature:
        raise CommandRejectedError("unsigned command", command_id=cid, command=name)
    fields = {k: v for k, v in raw.items() if k != "signature"}
    if not hmac.compare_digest(_mac(key, fields), signature):
        raise CommandRejectedError("bad signature", command_id=cid, command=name)
    try:
        cmd = Command.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CommandRejectedError(f"invalid command: {problems}", command_id=cid, command=name) from None
    issued = cmd.issued_at if cmd.issued_at.tzinfo else cmd.issued_at.replace(tzinfo=UTC)
    age = (now - issued).total_seconds()
    if age > max_age_s:
        raise CommandRejectedError(
            f"expired: issued {age:.0f}s ago (max {max_age_s:g}s)", command_id=cid, command=name
        )
    if age < -max_age_s:
        raise CommandRejectedError(
            f"issued_at is {-age:.0f}s in the future (max {max_age_s:g}s)", command_id=cid, command=name
        )
    if cmd.command is CommandName.ROLLBACK and not isinstance(cmd.args.get("version"), str):
        raise CommandRejectedError("rollback needs args.version", command_id=cid, command=name)
    return cmd
