"""Control commands: signing, verification, expiry, tampering — no Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.wire.control import (
    Command,
    CommandName,
    CommandRejectedError,
    canonical_bytes,
    new_command,
    parse_command,
    verify,
)

KEY = b"test-control-key"
NOW = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def wire(cmd: Command) -> dict[str, object]:
    return dict(orjson.loads(cmd.to_json()))


def test_signed_command_round_trips() -> None:
    cmd = new_command("retrain", KEY, now=NOW)
    got = verify(parse_command(cmd.to_json()), KEY, now=NOW, max_age_s=60)
    assert got == cmd
    assert got.command is CommandName.RETRAIN


def test_canonical_bytes_ignore_key_order() -> None:
    assert canonical_bytes({"b": 1, "a": {"d": 2, "c": 3}}) == b'{"a":{"c":3,"d":2},"b":1}'


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda w: w.pop("signature"), "unsigned"),
        (lambda w: w.update(signature="00" * 32), "bad signature"),
        (lambda w: w.update(command="rollback"), "bad signature"),
        (lambda w: w.update(command_id="other"), "bad signature"),
        (lambda w: w.update(args={"x": 1}), "bad signature"),
    ],
)
def test_tampered_or_unsigned_is_rejected(mutate: object, reason: str) -> None:
    w = wire(new_command("retrain", KEY, now=NOW))
    cid = w["command_id"]
    mutate(w)  # type: ignore[operator]
    with pytest.raises(CommandRejectedError, match=reason) as info:
        verify(w, KEY, now=NOW, max_age_s=60)
    assert info.value.command_id == w.get("command_id", cid)


def test_wrong_key_is_rejected() -> None:
    w = wire(new_command("status", b"another key", now=NOW))
    with pytest.raises(CommandRejectedError, match="bad signature"):
        verify(w, KEY, now=NOW, max_age_s=60)


def test_no_key_on_worker_rejects_everything() -> None:
    w = wire(new_command("status", KEY, now=NOW))
    with pytest.raises(CommandRejectedError, match="no control key"):
        verify(w, None, now=NOW, max_age_s=60)


def test_expired_and_future_commands_are_rejected() -> None:
    old = wire(new_command("retrain", KEY, now=NOW - timedelta(seconds=61)))
    with pytest.raises(CommandRejectedError, match="expired"):
        verify(old, KEY, now=NOW, max_age_s=60)
    future = wire(new_command("retrain", KEY, now=NOW + timedelta(seconds=61)))
    with pytest.raises(CommandRejectedError, match="future"):
        verify(future, KEY, now=NOW, max_age_s=60)
    verify(wire(new_command("retrain", KEY, now=NOW - timedelta(seconds=59))), KEY, now=NOW, max_age_s=60)


def test_rollback_needs_a_version() -> None:
    with pytest.raises(CommandRejectedError, match="version"):
        verify(wire(new_command("rollback", KEY, now=NOW)), KEY, now=NOW, max_age_s=60)
    ok = verify(
        wire(new_command("rollback", KEY, args={"version": "v1"}, now=NOW)), KEY, now=NOW, max_age_s=60
    )
    assert ok.args == {"version": "v1"}


def test_unknown_command_signed_correctly_is_still_rejected() -> None:
    cmd = new_command("status", KEY, now=NOW)
    fields = cmd.unsigned_fields() | {"command": "format-disk"}
    import hashlib
    import hmac

    fields["signature"] = hmac.new(KEY, canonical_bytes(fields), hashlib.sha256).hexdigest()
    with pytest.raises(CommandRejectedError, match="invalid command"):
        verify(fields, KEY, now=NOW, max_age_s=60)


@pytest.mark.parametrize("value", [None, b"", b"not json", b"[1,2]", b"x" * 20_000])
def test_undecodable_messages_are_rejected(value: bytes | None) -> None:
    with pytest.raises(CommandRejectedError):
        parse_command(value)


@given(st.dictionaries(st.text(max_size=10), st.one_of(st.none(), st.integers(), st.text(max_size=20))))
def test_arbitrary_objects_never_crash_verify(raw: dict[str, object]) -> None:
    with pytest.raises(CommandRejectedError):
        verify(raw, KEY, now=NOW, max_age_s=60)
