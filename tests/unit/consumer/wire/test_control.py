"""Control commands: signing, verification, expiry, tampering — no Kafka."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.wire.control import (
    MAX_ARGS_DEPTH,
    MAX_COMMAND_BYTES,
    Command,
    CommandName,
    CommandRejectedError,
    _raw_depth_exceeds,
    canonical_bytes,
    message_is_signed,
    new_command,
    parse_command,
    peek_command_id,
    sign_message,
    verify,
)

KEY = b"test-control-key-0123456789abcdef"
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


# --- nothing on the control topic can crash its reader (issue 13, defect 1) -------------------------


def nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def deep_wire(depth: int, *, signature: str = "ab" * 32) -> bytes:
    """A command whose args nest ``depth`` levels, as raw text (no serialiser could write 300)."""
    head = b'{"command":"status","command_id":"deep-1","issued_at":"2026-11-25T18:00:00Z","args":'
    return head + b'{"a":' * depth + b"1" + b"}" * depth + b',"signature":"' + signature.encode() + b'"}'


def accept_or_reject(value: bytes | None) -> None:
    """Parse and verify; the only exception allowed out is CommandRejectedError."""
    with contextlib.suppress(CommandRejectedError):
        verify(parse_command(value), KEY, now=NOW, max_age_s=60)


@pytest.mark.parametrize("depth", [9, 300, 2_000])
def test_deep_args_are_rejected_with_their_command_id_before_parsing(depth: int) -> None:
    with pytest.raises(CommandRejectedError, match="deeper than 8") as info:
        parse_command(deep_wire(depth))
    assert info.value.command_id == "deep-1"


def test_the_300_level_command_of_the_issue_is_refused_by_verify_too() -> None:
    """The same command handed to verify as a decoded object: the shape check stops it before the MAC."""
    raw = wire(new_command("status", KEY, now=NOW))
    raw["args"] = nested(300)
    with pytest.raises(CommandRejectedError, match="invalid command: args") as info:
        verify(raw, KEY, now=NOW, max_age_s=60)
    assert info.value.command_id == raw["command_id"]


def test_args_nesting_up_to_the_bound_is_accepted_and_brackets_in_strings_do_not_count() -> None:
    args = {"deep": nested(MAX_ARGS_DEPTH - 1), "text": "[[[[{{{{" * 20 + '\\"[{'}
    cmd = new_command("status", KEY, args=args, now=NOW)
    assert verify(parse_command(cmd.to_json()), KEY, now=NOW, max_age_s=60).args == args
    assert parse_command(deep_wire(MAX_ARGS_DEPTH))["command_id"] == "deep-1"
    with pytest.raises(ValueError, match="deeper"):  # nor can a signer build a deeper one
        new_command("status", KEY, args={"deep": nested(MAX_ARGS_DEPTH)}, now=NOW)


def test_an_oversized_signed_command_is_rejected_with_its_command_id() -> None:
    cmd = new_command("status", KEY, args={"pad": "x" * MAX_COMMAND_BYTES}, now=NOW)
    with pytest.raises(CommandRejectedError, match="exceeds") as info:
        parse_command(cmd.to_json())
    assert info.value.command_id == cmd.command_id


def test_non_ascii_or_oversized_signatures_are_rejected_not_raised() -> None:
    for signature in ("é" * 64, "0" * 129, "\udcff" * 10):
        raw = wire(new_command("status", KEY, now=NOW)) | {"signature": signature}
        with pytest.raises(CommandRejectedError):
            verify(raw, KEY, now=NOW, max_age_s=60)


def test_args_that_cannot_be_serialised_are_a_bad_signature_not_a_crash() -> None:
    raw = wire(new_command("status", KEY, now=NOW)) | {"args": {"n": 2**70}}
    with pytest.raises(CommandRejectedError, match="bad signature"):
        verify(raw, KEY, now=NOW, max_age_s=60)


def test_peek_command_id_reads_a_prefix_only() -> None:
    assert peek_command_id(b'{"command":"x","command_id": "abc-1",') == "abc-1"
    assert peek_command_id(b"\xff\xfe" + b"[" * 10_000) is None
    assert peek_command_id(b" " * 5_000 + b'"command_id":"late"') is None
    assert peek_command_id(None) is None


JSON_LEAVES = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=50)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
COMMAND_LIKE = st.fixed_dictionaries(
    {
        "command": st.sampled_from(["retrain", "rollback", "reload", "status", "rm -rf"]) | JSON_VALUES,
        "command_id": st.text(max_size=200) | JSON_VALUES,
        "issued_at": st.just("2026-11-25T18:00:00Z") | JSON_VALUES,
        "args": JSON_VALUES,
    },
    optional={"signature": st.text(max_size=130) | JSON_VALUES, "issued_by": JSON_VALUES},
)


@given(st.binary(max_size=2_000))
def test_arbitrary_bytes_never_raise_anything_but_a_rejection(value: bytes) -> None:
    accept_or_reject(value)


@given(COMMAND_LIKE | JSON_VALUES, st.integers(0, 1_200), st.sampled_from(["{", "["]))
def test_arbitrary_json_deeply_wrapped_never_raises_anything_but_a_rejection(
    value: object, depth: int, bracket: str
) -> None:
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str)
    opener, closer = (b'{"k":', b"}") if bracket == "{" else (b"[", b"]")
    accept_or_reject(opener * depth + text + closer * depth)  # deeper than any serialiser writes
    accept_or_reject(text)
    if isinstance(value, dict):
        with contextlib.suppress(CommandRejectedError):
            verify(value | {"args": nested(depth)}, KEY, now=NOW, max_age_s=60)


@given(COMMAND_LIKE, st.integers(0, 3 * MAX_COMMAND_BYTES))
def test_huge_strings_never_raise_anything_but_a_rejection(value: dict[str, object], size: int) -> None:
    accept_or_reject(orjson.dumps(value | {"issued_by": "x" * size}, default=str))


@given(COMMAND_LIKE)
def test_a_correctly_signed_arbitrary_command_is_accepted_or_rejected(value: dict[str, object]) -> None:
    fields = {k: v for k, v in value.items() if k != "signature"}
    try:
        fields["signature"] = hmac.new(KEY, canonical_bytes(fields), hashlib.sha256).hexdigest()
    except TypeError:  # not serialisable: nothing a signer could send
        return
    accept_or_reject(orjson.dumps(fields))


# --- signed status messages (issue 13, defect 6) ----------------------------------------------------


def test_status_messages_are_signed_and_verified_after_a_round_trip() -> None:
    msg = {"type": "model_published", "version": "v1", "rate": np.float64(0.1), "at": NOW, "n": np.int64(3)}
    signed = orjson.loads(orjson.dumps(sign_message(msg, KEY)))
    assert message_is_signed(signed, KEY)
    assert not message_is_signed(signed, b"another-key-0123456789abcdef-0123")
    assert not message_is_signed(signed | {"version": "v2"}, KEY)
    assert not message_is_signed({k: v for k, v in signed.items() if k != "signature"}, KEY)
    assert "signature" not in sign_message(msg, None)


def test_verifying_a_hostile_status_message_never_raises() -> None:
    hostile = orjson.loads(
        b'{"type":"model_published","x":' + b"[" * 600 + b"]" * 600 + b',"signature":"00"}'
    )
    assert not message_is_signed(hostile, KEY)
    assert not message_is_signed({"type": "command_ack", "signature": "é" * 64}, KEY)
    assert not message_is_signed({"signature": 7}, KEY)


def depth_of(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


@given(JSON_VALUES | st.text(alphabet='[]{}"\\\\ab', max_size=30), st.integers(0, 6))
def test_the_raw_depth_scan_agrees_with_the_parsed_depth(value: object, limit: int) -> None:
    """Brackets inside strings, escaped quotes and backslashes do not fool the pre-parse scan."""
    text = orjson.dumps({"args": value, "note": value if isinstance(value, str) else '\\\\"[{'})
    assert _raw_depth_exceeds(text, limit) == (1 + depth_of(value) > limit)
