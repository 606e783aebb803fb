"""`stockwatch retrain-worker`: the control loop around :class:`consumer.retraining.retrainer.Retrainer`.

It polls ``stockwatch.control`` as a member of ``control_group_id``, verifies each command
(:mod:`consumer.wire.control`; replays by ``command_id`` in Mongo ``control_commands``), acks it on
``stockwatch.status`` and commits its offset at once: no record can stop the loop. Between polls it
reads analyst labels (:mod:`consumer.retraining.feedback`). Retrains (command, schedule, or start-up
without a model) run in a thread under the Mongo lease; a ``retrain`` while one runs or within
``retrain_cooldown_s`` is coalesced (``force`` bypasses the cooldown only). docs/retrain-worker.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from consumer.ports import KafkaUnavailableError, MongoUnavailableError
from consumer.retraining.feedback import FeedbackReader
from consumer.retraining.lease import Lease
from consumer.retraining.monitor import WorkerMonitor
from consumer.retraining.retrainer import Retrainer, RetrainOutcome
from consumer.retraining.status import StatusReporter
from consumer.wire.control import (
    Ack,
    Command,
    CommandName,
    CommandRejectedError,
    command_digest,
    parse_command,
    peek_command_id,
    verify,
)
from detection import ModelNotFoundError, ModelStore, ModelVerificationError

__all__ = ["ControlFeed", "RetrainWorker"]

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 300.0


class ControlFeed(Protocol):
    """``consumer.adapters.kafka.ControlSource``."""

    def poll(self, timeout_s: float) -> list[tuple[int, int, bytes | None]]: ...
    def commit(self, partition: int, offset: int) -> None: ...
    def assignment(self) -> set[int]: ...


class CommandLog(Protocol):
    """Seen command ids, for replay protection (``consumer.adapters.mongo.WorkerMongo``)."""

    def remember_command(self, command_id: str, *, command: str, issued_at: str, now: float) -> bool: ...
    def prune_commands(self, *, older_than: float) -> int: ...


class RetrainWorker:
    """Handles control commands and triggers; see the module docstring."""

    def __init__(
        self,
        *,
        control: ControlFeed,
        reporter: StatusReporter,
        db: CommandLog,
        store: ModelStore,
        retrainer: Retrainer,
        lease: Lease,
        key: bytes | None,
        interval_s: float,
        cooldown_s: float,
        max_age_s: float,
        monitor: WorkerMonitor | None = None,
        clock: Callable[[], float] = time.time,
        feedback: FeedbackReader | None = None,
    ) -> None:
        self.control, self.feedback = control, feedback
        self.reporter, self.db, self.store, self.retrainer = reporter, db, store, retrainer
        self.lease, self.key = lease, key
        self.interval_s, self.cooldown_s, self.max_age_s, self._clock = (
            interval_s,
            cooldown_s,
            max_age_s,
            clock,
        )
        self.stop_event = threading.Event()
        self._run: threading.Thread | None = None
        self._run_trigger: dict[str, Any] | None = None
        self._started = clock()
        self._next_schedule_check = 0.0
        self._next_prune = 0.0
        self.last_outcome: RetrainOutcome | None = None
        self.monitor = monitor if monitor is not None else WorkerMonitor()

    # ------------------------------------------------------------------ loop

    def run(self, *, timeout_s: float | None = None, poll_s: float = 0.5) -> None:
        """Serve until ``stop_event`` is set (SIGTERM) or ``timeout_s`` passes; waits for a running retrain."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._startup()
        while not self.stop_event.is_set() and (deadline is None or time.monotonic() < deadline):
            self.step(poll_s)
        running = self._run  # the thread clears self._run when it ends
        if running is not None:
            running.join()

    def step(self, poll_s: float) -> None:
        """One poll of the control topic, plus the schedule and housekeeping."""
        self.monitor.tick(len(self.control.assignment()))
        try:
            records = self.control.poll(poll_s)
        except KafkaUnavailableError as exc:
            self.monitor.unavailable("kafka", exc)
            log.warning("control topic unavailable: %s", exc)
            self.stop_event.wait(min(5.0, poll_s * 4))
            return
        for partition, offset, value in records:
            log.info("control command at partition %d offset %d", partition, offset)
            self.handle(value)
            try:  # per record: a crash later in the batch never brings this one back
                self.control.commit(partition, offset)
            except KafkaUnavailableError as exc:
                self.monitor.unavailable("kafka", exc)
                log.warning(
                    "could not commit control partition %d offset %d (it may be read again and then "
                    "rejected as replayed): %s",
                    partition,
                    offset,
                    exc,
                )
        if self.feedback is not None:
            self.feedback.step()
        self._housekeeping()

    def _startup(self) -> None:
        try:
            empty = self.store.current_version() is None
        except ModelVerificationError:
            empty = True
        if empty:
            log.info("the model store has no model: retraining at start-up")
            self.request_retrain({"kind": "startup", "by": self.lease.owner}, None)

    def _housekeeping(self) -> None:
        now = self._clock()
        if now >= self._next_schedule_check:
            self._next_schedule_check = now + min(30.0, self.interval_s / 4)
            try:
                since = self.lease.seconds_since_finished(self.lease.state())
                self.monitor.mongo_ok()
            except MongoUnavailableError as exc:
                self.monitor.unavailable("mongo", exc)
                log.warning("cannot read the lease for the schedule: %s", exc)
                since = None
            reference = since if since is not None else now - self._started
            if reference >= self.interval_s and self._run is None:
                self.request_retrain({"kind": "schedule", "by": self.lease.owner}, None)
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY_S
            try:
                self.db.prune_commands(older_than=now - 2 * self.max_age_s)
            except MongoUnavailableError as exc:
                self.monitor.unavailable("mongo", exc)
                log.warning("could not prune seen command ids: %s", exc)

    # ------------------------------------------------------------------ commands

    def handle(self, value: bytes | None) -> None:
        """Verify one raw command and act on it; every outcome is acknowledged, nothing is raised."""
        digest = command_digest(value or b"")
        try:
            cmd = verify(parse_command(value), self.key, now=datetime.now(UTC), max_age_s=self.max_age_s)
            self._check_replay(cmd)
        except CommandRejectedError as exc:
            log.warning("rejected control command %s: %s", exc.command_id, exc.reason)
            self.reporter.ack(Ack.REJECTED, exc.command_id, exc.command, reason=exc.reason, digest=digest)
            return
        except Exception as exc:  # a bug met by one command must not stop the control plane
            cid = peek_command_id(value)
            log.error("control command %s could not be verified: %r", cid, exc)
            reason = f"internal error while verifying: {type(exc).__name__}"
            self.reporter.ack(Ack.REJECTED, cid, None, reason=reason, digest=digest)
            return
        try:
            self._dispatch(cmd)
        except Exception as exc:  # same: the command fails, the worker keeps serving
            log.error("control command %s %s failed: %r", cmd.command.value, cmd.command_id, exc)
            reason = f"internal error: {type(exc).__name__}: {exc}"
            self.reporter.ack(Ack.FAILED, cmd.command_id, cmd.command.value, reason=reason)

    def _dispatch(self, cmd: Command) -> None:
        log.info("control command %s %s from %s", cmd.command.value, cmd.command_id, cmd.issued_by)
        trigger = {"kind": "command", "by": cmd.issued_by, "command_id": cmd.command_id}
        if cmd.command is CommandName.RETRAIN:
            self.request_retrain(trigger, cmd)
        elif cmd.command is CommandName.ROLLBACK:
            self._rollback(cmd, trigger)
        elif cmd.command is CommandName.RELOAD:
            self._reload(cmd, trigger)
        else:
            self.reporter.ack(Ack.DONE, cmd.command_id, cmd.command.value, result=self.describe())

    def _check_replay(self, cmd: Command) -> None:
        try:
            fresh = self.db.remember_command(
                cmd.command_id,
                command=cmd.command.value,
                issued_at=cmd.issued_at.isoformat(),
                now=self._clock(),
            )
        except MongoUnavailableError as exc:
            self.monitor.unavailable("mongo", exc)
            raise CommandRejectedError(
                f"cannot check for replay (Mongo unavailable): {exc}",
                command_id=cmd.command_id,
                command=cmd.command.value,
            ) from exc
        if not fresh:
            raise CommandRejectedError(
                "replayed: command_id was seen before", command_id=cmd.command_id, command=cmd.command.value
            )

    def request_retrain(self, trigger: dict[str, Any], cmd: Command | None) -> bool:
        """Start a retrain unless one runs or just ran (coalesced); True when one was started."""
        cid = cmd.command_id if cmd else None
        if self._run is not None and self._run.is_alive():
            self.reporter.ack(
                Ack.COALESCED,
                cid,
                "retrain",
                reason="a retrain is running on this worker",
                result={"into": self._run_trigger},
            )
            return False
        try:
            doc = self.lease.state()
            holder = self.lease.holder(doc)
            since = self.lease.seconds_since_finished(doc)
            if holder is not None:  # who and until when: a dead holder's lease lapses then
                self.reporter.ack(
                    Ack.COALESCED, cid, "retrain", reason=holder.reason(), result=holder.describe()
                )
                return False
            forced = cmd is not None and cmd.args.get("force") is True  # `ctl retrain --force`
            if cmd is not None and not forced and since is not None and since < self.cooldown_s:
                last = (doc or {}).get("last") or {}
                reason = f"a retrain finished {since:.0f}s ago (cooldown {self.cooldown_s:g}s)"
                self.reporter.ack(Ack.COALESCED, cid, "retrain", reason=reason, result={"last": last})
                return False
            if not self.lease.acquire():  # another worker took it since the read above
                holder = self.lease.holder(self.lease.state())
                reason = holder.reason() if holder else "another worker took the retrain lease"
                result = holder.describe() if holder else None
                self.reporter.ack(Ack.COALESCED, cid, "retrain", reason=reason, result=result)
                return False
        except MongoUnavailableError as exc:
            self.monitor.unavailable("mongo", exc)
            self.reporter.ack(Ack.FAILED, cid, "retrain", reason=f"Mongo unavailable: {exc}")
            return False
        self.reporter.ack(Ack.ACCEPTED, cid, "retrain", result={"trigger": trigger})
        self._run_trigger = trigger
        self.monitor.retrain_started()
        self._run = threading.Thread(
            target=self._retrain, args=(trigger, cid), name="stockwatch-retrain", daemon=True
        )
        self._run.start()
        return True

    def _retrain(self, trigger: dict[str, Any], cid: str | None) -> None:
        outcome: RetrainOutcome | None = None
        started = time.monotonic()
        try:
            outcome = self.retrainer.run(trigger, should_abort=self.lease.lost.is_set)
        except Exception as exc:  # never leave the lease held or the command unanswered
            log.exception("retrain crashed")
            outcome = RetrainOutcome(run_id="crashed", status="failed", trigger=trigger, reasons=[repr(exc)])
        finally:
            summary = outcome.as_dict() if outcome else {"status": "failed"}
            self.lease.release(
                {k: summary.get(k) for k in ("run_id", "status", "version", "candidate_id", "reasons")}
            )
            self.last_outcome = outcome
            self.monitor.retrain_finished(summary["status"], time.monotonic() - started)
            self._run = None
        result = outcome.as_dict()
        self.reporter.emit({"type": "retrain_finished", "command_id": cid, "result": result})
        ack = Ack.DONE if outcome.status in ("promoted", "rejected", "insufficient_data") else Ack.FAILED
        self.reporter.ack(ack, cid, "retrain", reason="; ".join(outcome.reasons) or None, result=result)

    def _rollback(self, cmd: Command, trigger: dict[str, Any]) -> None:
        version = str(cmd.args["version"])
        try:
            if self._run is not None or self.lease.held_by_other(self.lease.state()) is not None:
                raise ValueError("a retrain is running; roll back after it finishes")  # it would undo it
            self.store.rollback(version)
        except (
            ModelNotFoundError,
            ModelVerificationError,
            MongoUnavailableError,
            OSError,
            ValueError,
        ) as exc:
            self.reporter.ack(Ack.FAILED, cmd.command_id, "rollback", reason=str(exc))
            return
        self._announce(cmd, trigger, version)

    def _reload(self, cmd: Command, trigger: dict[str, Any]) -> None:
        try:
            version = self.store.current_version()
            if version is None:
                raise ModelNotFoundError(f"no model published yet in {self.store.root}")
        except (ModelNotFoundError, ModelVerificationError) as exc:
            self.reporter.ack(Ack.FAILED, cmd.command_id, "reload", reason=str(exc))
            return
        self._announce(cmd, trigger, version)

    def _announce(self, cmd: Command, trigger: dict[str, Any], version: str) -> None:
        """Tell every consumer to load ``version`` (model_published), then acknowledge ``cmd``."""
        self.reporter.emit(
            {"type": "model_published", "version": version, "trigger": trigger, "command_id": cmd.command_id}
        )
        self.reporter.ack(Ack.DONE, cmd.command_id, cmd.command.value, result={"version": version})

    def describe(self) -> dict[str, Any]:
        """The worker's state for a ``status`` command."""
        try:
            lease: Mapping[str, Any] | None = self.lease.state()
        except MongoUnavailableError as exc:
            lease = {"error": str(exc)}
        try:
            current: str | None = self.store.current_version()
        except ModelVerificationError as exc:
            current = f"unreadable: {exc}"
        return {
            "worker": self.lease.owner,
            "current_version": current,
            "running": self._run_trigger if self._run is not None else None,
            "lease": dict(lease) if lease else None,
            "last_outcome": self.last_outcome.as_dict() if self.last_outcome else None,
        }
