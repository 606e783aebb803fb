"""Single flight across worker instances: a short lease document in Mongo, renewed while a run lasts.

The lease ``{_id: "retrain", owner, expires_at, finished_at, last}`` is taken with one atomic
``find_one_and_update(upsert=True)`` whose filter matches only a free, expired or already-owned
lease (a held lease makes the upsert collide on ``_id`` — nobody else gets it). A heartbeat thread
renews it every ``ttl_s / 4`` (sooner after a failed renewal), so the TTL can be short: a worker
killed mid-run stops renewing and its lease expires after ``ttl_s`` (10 s by default), and a
restarted worker with the same identity (``worker_id``) takes its own lease back at once.
``finished_at`` (set on release) drives the cooldown that coalesces ``retrain`` commands arriving
just after a run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = ["DEFAULT_TTL_S", "Lease", "LeaseBackend", "LeaseHolder"]

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 10.0


@dataclass(frozen=True)
class LeaseHolder:
    """Another live owner of the lease and when its lease expires unless renewed (epoch seconds)."""

    owner: str
    expires_at: float

    def describe(self) -> dict[str, Any]:
        """For acks: who holds it and until when (ISO 8601, UTC)."""
        until = datetime.fromtimestamp(self.expires_at, UTC).isoformat(timespec="seconds")
        return {"holder": self.owner, "lease_expires_at": until}

    def reason(self) -> str:
        """Why a ``retrain`` is coalesced into this holder's run."""
        until = self.describe()["lease_expires_at"]
        return f"a retrain is running on {self.owner} (its lease expires at {until} unless renewed)"


class LeaseBackend(Protocol):
    """The Mongo operations the lease needs (``consumer.adapters.mongo.WorkerMongo``)."""

    def try_acquire_lease(
        self, name: str, owner: str, *, ttl_s: float, now: float
    ) -> dict[str, Any] | None: ...
    def renew_lease(self, name: str, owner: str, *, ttl_s: float, now: float) -> bool: ...
    def release_lease(self, name: str, owner: str, *, now: float, outcome: Mapping[str, Any]) -> None: ...
    def read_lease(self, name: str) -> dict[str, Any] | None: ...


class Lease:
    """One named lease held by ``owner``; use :meth:`acquire`, then :meth:`release` when done."""

    def __init__(
        self,
        backend: LeaseBackend,
        owner: str,
        *,
        name: str = "retrain",
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend, self.owner, self.name, self.ttl_s, self._clock = backend, owner, name, ttl_s, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = threading.Event()
        self._expires_at = 0.0  # the expiry this holder last secured (acquire or renewal)

    def state(self) -> dict[str, Any] | None:
        """The stored lease document."""
        return self.backend.read_lease(self.name)

    def held_by_other(self, doc: Mapping[str, Any] | None) -> str | None:
        """The other live owner named by ``doc``, if any."""
        holder = self.holder(doc)
        return holder.owner if holder is not None else None

    def holder(self, doc: Mapping[str, Any] | None) -> LeaseHolder | None:
        """The other live owner named by ``doc`` and its expiry; None when free, expired or ours."""
        if not doc or not doc.get("owner") or doc["owner"] == self.owner:
            return None
        expires_at = float(doc.get("expires_at") or 0)
        return LeaseHolder(str(doc["owner"]), expires_at) if expires_at >= self._clock() else None

    def seconds_since_finished(self, doc: Mapping[str, Any] | None) -> float | None:
        """Seconds since the last run released the lease (None when none has)."""
        if not doc or doc.get("finished_at") is None:
            return None
        return self._clock() - float(doc["finished_at"])

    def acquire(self) -> bool:
        """Take the lease and start renewing it; False when another owner holds it."""
        now = self._clock()
        doc = self.backend.try_acquire_lease(self.name, self.owner, ttl_s=self.ttl_s, now=now)
        if doc is None:
            return False
        self._expires_at = now + self.ttl_s
        self._stop.clear()
        self.lost.clear()
        self._thread = threading.Thread(target=self._renew, name="stockwatch-lease", daemon=True)
        self._thread.start()
        return True

    def release(self, outcome: Mapping[str, Any]) -> None:
        """Stop renewing and free the lease, recording ``outcome``; failures are logged (it expires)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        try:
            self.backend.release_lease(self.name, self.owner, now=self._clock(), outcome=outcome)
        except Exception as exc:  # Mongo down: the lease simply expires after ttl_s
            log.warning(
                "could not release lease %s (%r); it expires in at most %gs", self.name, exc, self.ttl_s
            )

    def _renew(self) -> None:
        wait = self.ttl_s / 4
        while not self._stop.wait(wait):
            now = self._clock()
            try:
                if not self.backend.renew_lease(self.name, self.owner, ttl_s=self.ttl_s, now=now):
                    log.error("lease %s was taken over by another worker", self.name)
                    self.lost.set()
                    return
                self._expires_at, wait = now + self.ttl_s, self.ttl_s / 4
            except Exception as exc:  # transient: retry sooner, the lease must not lapse meanwhile
                if self._clock() >= self._expires_at:  # lapsed unrenewed: another worker may hold it now
                    log.error("lease %s lapsed while renewals failed (%r): giving the run up", self.name, exc)
                    self.lost.set()
                    return
                log.warning("renewing lease %s failed: %r", self.name, exc)
                wait = self.ttl_s / 10
