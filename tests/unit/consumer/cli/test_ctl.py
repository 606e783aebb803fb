"""`stockwatch ctl` believes only acknowledgements the worker signed (issue 13, defect 6) — no Kafka."""

from __future__ import annotations

import os
import time
from typing import Any, cast

import orjson
import pytest

from consumer.cli import main
from consumer.cli.ctl import EXIT_COALESCED, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, _wait_for
from consumer.wire.control import command_digest, new_command, sign_message

KEY = b"ctl-unit-control-key-0123456789abcdef"
OTHER = b"not-the-control-key-0123456789abcdef"


class Tail:
    """The status topic as ctl's StatusTail returns it: decoded JSON objects, once each."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = [orjson.loads(orjson.dumps(m)) for m in messages]

    def poll(self, timeout_s: float) -> list[dict[str, Any]]:
        out, self.messages = self.messages, []
        return out


def ack(cid: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"type": "command_ack", "status": status, "command_id": cid, "command": "retrain", **extra}


PROMOTED = {"result": {"status": "promoted", "version": "v9"}}


def wait(messages: list[dict[str, Any]], cid: str, digest: str = "d") -> int:
    return _wait_for(
        cast(Any, Tail(messages)), cid, time.monotonic() + 0.3, 0.3, key=KEY, digest=digest, max_age_s=300
    )


def test_a_forged_promotion_is_ignored_and_ctl_times_out(capsys: pytest.CaptureFixture[str]) -> None:
    cid = new_command("retrain", KEY).command_id
    forged = [
        ack(cid, "done", **PROMOTED),  # unsigned
        sign_message(ack(cid, "done", **PROMOTED), OTHER),  # signed with another key
        sign_message(ack(cid, "accepted"), KEY) | {"status": "done", **PROMOTED},  # tampered
    ]
    assert wait(forged, cid) == EXIT_TIMEOUT
    out, err = capsys.readouterr()
    assert out == ""
    assert "3 acknowledgement(s) were not signed with this STOCKWATCH_CONTROL_KEY" in err


def test_a_timeout_says_whether_the_command_still_runs_later(capsys: pytest.CaptureFixture[str]) -> None:
    cid = new_command("retrain", KEY).command_id
    assert wait([], cid) == EXIT_TIMEOUT
    assert (
        "it stays pending: a worker that starts within 300s of sending still runs it"
        in capsys.readouterr().err
    )
    assert wait([sign_message(ack(cid, "accepted"), KEY)], cid) == EXIT_TIMEOUT
    assert "a worker accepted it and is still running it" in capsys.readouterr().err


def test_the_signed_promotion_is_believed(capsys: pytest.CaptureFixture[str]) -> None:
    cid = new_command("retrain", KEY).command_id
    signed = [sign_message(ack(cid, "accepted"), KEY), sign_message(ack(cid, "done", **PROMOTED), KEY)]
    assert wait(signed, cid) == EXIT_OK
    assert [orjson.loads(line)["status"] for line in capsys.readouterr().out.splitlines()] == [
        "accepted",
        "done",
    ]


def test_a_rejection_counts_only_when_it_quotes_the_digest_of_what_ctl_sent() -> None:
    cmd = new_command("retrain", KEY)
    digest = command_digest(cmd.to_json())
    impostor = sign_message(ack(cmd.command_id, "rejected", digest=command_digest(b"{}")), KEY)
    assert wait([impostor], cmd.command_id, digest) == EXIT_TIMEOUT
    own = sign_message(ack(cmd.command_id, "rejected", digest=digest), KEY)
    assert wait([impostor, own], cmd.command_id, digest) == EXIT_FAILED


def test_a_replayed_copy_rejected_after_acceptance_does_not_end_the_wait() -> None:
    cmd = new_command("retrain", KEY)
    digest = command_digest(cmd.to_json())
    acks = [
        sign_message(ack(cmd.command_id, "accepted"), KEY),
        sign_message(ack(cmd.command_id, "rejected", digest=digest, reason="replayed"), KEY),  # the copy
        sign_message(ack(cmd.command_id, "done", **PROMOTED), KEY),
    ]
    assert wait(acks, cmd.command_id, digest) == EXIT_OK


def test_a_coalesced_retrain_says_so_and_exits_5(capsys: pytest.CaptureFixture[str]) -> None:
    cid = new_command("retrain", KEY).command_id
    coalesced = sign_message(ack(cid, "coalesced", reason="a retrain finished 3s ago (cooldown 60s)"), KEY)
    assert wait([coalesced], cid) == EXIT_COALESCED == 5
    err = capsys.readouterr().err
    assert f"{cid} was coalesced: a retrain finished 3s ago" in err


@pytest.mark.parametrize("status", ["rejected", "failed"])
def test_a_rejected_or_failed_command_says_why_on_stderr(
    status: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cmd = new_command("rollback", KEY, args={"version": "20991202T043656Z-deadbeef"})
    digest = command_digest(cmd.to_json())
    reason = "version 20991202T043656Z-deadbeef is not in the store"
    answer = ack(cmd.command_id, status, reason=reason, digest=digest) | {"command": "rollback"}
    assert wait([sign_message(answer, KEY)], cmd.command_id, digest) == EXIT_FAILED
    out, err = capsys.readouterr()
    assert orjson.loads(out)["status"] == status  # the ack itself stays on stdout
    assert err == f"stockwatch ctl: rollback {cmd.command_id} {status}: {reason}\n"


@pytest.fixture
def ctl_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))
    monkeypatch.setenv("STOCKWATCH_CONTROL_KEY", KEY.decode())
    monkeypatch.setenv("STOCKWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # closed: nothing may reach Kafka


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "1e309", "soon"])
def test_timeout_must_be_finite_and_positive(ctl_env: None, capsys: pytest.CaptureFixture[str], timeout: str):
    with pytest.raises(SystemExit) as exited:
        main(["ctl", "status", "--timeout", timeout])
    assert exited.value.code == 2
    assert "--timeout" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["rollback", "../../etc"], ["rollback", "latest"], ["status", "--force"], ["rollback"]]
)
def test_bad_arguments_fail_locally_before_kafka(
    ctl_env: None, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    started = time.monotonic()
    assert main(["ctl", *argv, "--timeout", "30"]) == 2
    assert time.monotonic() - started < 5  # refused before any connection attempt (bootstrap is closed)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unreachable_kafka_is_one_line_within_the_timeout(
    ctl_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert main(["ctl", "status", "--timeout", "2"]) == EXIT_FAILED
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "STOCKWATCH_KAFKA_BOOTSTRAP" in err[0] and "127.0.0.1:1" in err[0]
    assert elapsed < 2 + 5  # was 30.7 s: the timeout now bounds the connection
