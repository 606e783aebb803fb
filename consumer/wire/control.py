"""Signed control commands (``stockwatch.control``) and their verification — pure, no I/O.

A command is a JSON object::

    {"command": "retrain" | "rollback" | "reload" | "status",
     "command_id": "<unique>", "issued_at": "<ISO 8601 UTC>", "issued_by": "<who>",
     "args": {...},                      # e.g. {"version": "..."} for rollback
     "signature": "<hex HMAC-SHA256>"}

The signature is HMAC-SHA256 with ``STOCKWATCH_CONTROL_KEY`` over the *canonical JSON* of every
other field: orjson with sorted keys, no whitespace (:func:`canonical_bytes`).

Nothing on the control topic can crash its reader: :func:`parse_command` refuses, before any
parser sees them, messages over :data:`MAX_COMMAND_BYTES` and messages nesting deeper than
:data:`MAX_ARGS_DEPTH` levels inside ``args`` (a bracket scan of the raw bytes); :func:`verify`
then checks, in order: the shape (the :class:`Command` schema), a key is configured, the
signature, the age of ``issued_at`` (older than ``max_age_s`` or more than ``max_age_s`` in the
future is refused). Every failure is a :class:`CommandRejectedError`, never anything else.
Replay protection needs durable state (the ``command_id`` seen before) and lives in
:mod:`consumer.adapters.mongo`; :func:`verify` only says whether the command itself is acceptable.

Status messages (acks, ``model_published``) are signed the same way (:func:`sign_message`,
:func:`message_is_signed`), so a forged acknowledgement or announcement is recognised as such.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "MAX_ARGS_DEPTH",
    "MAX_COMMAND_BYTES",
    "Ack",
    "Command",
    "CommandName",
    "CommandRejectedError",
    "canonical_bytes",
    "command_digest",
    "message_is_signed",
    "new_command",
    "parse_command",
    "peek_command_id",
    "sign",
    "sign_message",
    "verify",
]

MAX_COMMAND_BYTES = 16_384
MAX_ARGS_DEPTH = 8  # objects/arrays nested inside ``args``, ``args`` itself counting as one
MAX_SIGNATURE_CHARS = 128
_STRUCTURAL = re.compile(rb'[\[\]{}"\\]')  # what the depth scan looks at: brackets, quotes, escapes
_ID_PEEK = re.compile(rb'"command_id"\s*:\s*"([^"\\]{1,128})"')
PEEK_PREFIX_BYTES = 4096  # ctl writes command_id second, well within this


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
    signature: str | None = Field(default=None, max_length=MAX_SIGNATURE_CHARS)

    @field_validator("args")
    @classmethod
    def _shallow(cls, args: dict[str, Any]) -> dict[str, Any]:
        if _deeper_than(args, MAX_ARGS_DEPTH):
            raise ValueError(f"nests deeper than {MAX_ARGS_DEPTH} levels")
        return args

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


def _deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` nests dicts/lists more than ``limit`` levels (recursion stops at ``limit``)."""
    if isinstance(value, dict):
        children: Any = value.values()
    elif isinstance(value, list | tuple):
        children = value
    else:
        return False
    return limit <= 0 or any(_deeper_than(child, limit - 1) for child in children)


def _raw_depth_exceeds(value: bytes, limit: int) -> bool:
    """Whether the JSON text nests brackets (outside strings) deeper than ``limit``, without parsing it.

    One pass over the structural bytes: linear on any input (a regex for whole strings backtracks
    quadratically on unterminated ones: 0.6 s for 11 KB of escaped quotes).
    """
    depth, in_string, escaped_at = 0, False, -1
    for match in _STRUCTURAL.finditer(value):
        at = match.start()
        if at == escaped_at:
            continue
        char = value[at]
        if in_string:
            if char == 0x5C:  # backslash: the next byte is escaped
                escaped_at = at + 1
            elif char == 0x22:
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif char in b"]}":
            depth -= 1
    return False


def canonical_bytes(fields: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: compact JSON with sorted keys (orjson OPT_SORT_KEYS)."""
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def _mac(key: bytes, fields: Mapping[str, Any]) -> str:
    return hmac.new(key, canonical_bytes(fields), hashlib.sha256).hexdigest()


def _same(expected: str, given: str) -> bool:
    """Constant-time comparison that also takes non-ASCII input (``compare_digest`` raises on str)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def _mac_or_none(key: bytes, fields: Mapping[str, Any]) -> str | None:
    """The MAC, or None when ``fields`` cannot be serialised (too deep, non-JSON values)."""
    try:
        return _mac(key, fields)
    except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
        return None


def sign_message(msg: Mapping[str, Any], key: bytes | None) -> dict[str, Any]:
    """``msg`` as it goes on the wire, with ``signature`` (hex HMAC of its canonical JSON) when keyed.

    The message is normalised through JSON first (numpy values, datetimes become what a reader
    decodes), so the reader's canonical bytes are the signer's.
    """
    fields = orjson.loads(orjson.dumps(dict(msg), option=orjson.OPT_SERIALIZE_NUMPY))
    fields.pop("signature", None)
    if key:
        fields["signature"] = _mac(key, fields)
    return dict(fields)


def message_is_signed(msg: Mapping[str, Any], key: bytes) -> bool:
    """Whether ``msg`` (a decoded status message) carries a valid ``signature`` made with ``key``."""
    signature = msg.get("signature")
    if not key or not isinstance(signature, str) or len(signature) > MAX_SIGNATURE_CHARS:
        return False
    expected = _mac_or_none(key, {k: v for k, v in msg.items() if k != "signature"})
    return expected is not None and _same(expected, signature)


def command_digest(value: bytes) -> str:
    """What a ``rejected`` ack quotes of the message it rejects, so ``ctl`` can tell it is its own."""
    return hashlib.sha256(value).hexdigest()


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


def peek_command_id(value: bytes | None) -> str | None:
    """Best-effort ``command_id`` of raw bytes that may not parse (for the ``rejected`` ack)."""
    if not value:
        return None
    match = _ID_PEEK.search(value[:PEEK_PREFIX_BYTES])
    return match.group(1).decode("utf-8", "replace") if match else None


def parse_command(value: bytes | None) -> dict[str, Any]:
    """Decode the wire bytes into a JSON object, or raise :class:`CommandRejectedError`.

    Size and nesting are checked on the raw bytes first, so no parser or serialiser ever sees
    a message that could exhaust it.
    """
    if not value:
        raise CommandRejectedError("empty message")
    if len(value) > MAX_COMMAND_BYTES:
        raise CommandRejectedError(
            f"message of {len(value)} bytes exceeds {MAX_COMMAND_BYTES}", command_id=peek_command_id(value)
        )
    if _raw_depth_exceeds(value, MAX_ARGS_DEPTH + 1):  # + 1: the command object around args
        raise CommandRejectedError(
            f"nests deeper than {MAX_ARGS_DEPTH} levels in args", command_id=peek_command_id(value)
        )
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise CommandRejectedError(f"not JSON: {exc}", command_id=peek_command_id(value)) from None
    if not isinstance(raw, dict):
        raise CommandRejectedError(f"expected a JSON object, got {type(raw).__name__}")
    return raw


def verify(raw: Mapping[str, Any], key: bytes | None, *, now: datetime, max_age_s: float) -> Command:
    """Check shape, signature and age of a decoded command; raise :class:`CommandRejectedError` if bad."""
    cid, name = _peek(raw, "command_id"), _peek(raw, "command")
    try:  # the shape first: only a well-formed, shallow command is ever re-serialised for the MAC
        cmd = Command.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CommandRejectedError(f"invalid command: {problems}", command_id=cid, command=name) from None
    if not key:
        raise CommandRejectedError("no control key configured on the worker", command_id=cid, command=name)
    if not cmd.signature:
        raise CommandRejectedError("unsigned command", command_id=cid, command=name)
    expected = _mac_or_none(key, {k: v for k, v in raw.items() if k != "signature"})
    if expected is None or not _same(expected, cmd.signature):
        raise CommandRejectedError("bad signature", command_id=cid, command=name)
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
