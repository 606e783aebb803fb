"""`stockwatch notify`: anomaly events -> webhook POSTs, at least once, never twice within a run.

With ``alert_mode = "episodes"`` the anomaly topic carries an episode's ``open``, ``escalated`` and
``resolved`` events (each with its own ``anomaly_id``); every one is POSTed, its ``text`` saying
which. With ``every-update`` each anomalous update is.

The bridge reads ``anomaly_topic`` as a member of its own group (``notify_group_id``, default
``stockwatch-notify``), so a slow webhook never slows scoring. Per record, in order:

* not an anomaly event (no ``anomaly_id``): logged and skipped;
* its ``anomaly_id`` was delivered earlier in this run (a redelivery after a rebalance): skipped —
  a bounded LRU of delivered ids;
* else POSTed (:mod:`consumer.notify.webhook`): 2xx delivered; a dead payload (4xx other than 408/429)
  logged at ERROR and skipped; anything else retried with exponential backoff capped at
  ``notify_max_backoff_s``, for ever. While it waits the bridge pauses its partitions and keeps
  polling, so it stays in the group; a partition taken away meanwhile is dropped (its new owner
  reads it from the committed offset).

The record's offset is committed only after that decision. Stopping (SIGTERM, ``--run-for``)
during retries leaves the record uncommitted: the next run POSTs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson

from consumer.backoff import backoff_delay
from consumer.notify.webhook import Outcome, PostResult, payload
from consumer.ports import KafkaUnavailableError

__all__ = ["AnomalyFeed", "NotifyBridge", "NotifyStats", "Poster"]

log = logging.getLogger(__name__)

Record = tuple[int, int, bytes | None]  # partition, offset, value


class AnomalyFeed(Protocol):
    """``consumer.adapters.kafka.GroupFeed`` on the anomaly topic."""

    topic: str

    def poll(self, timeout_s: float) -> list[Record]: ...
    def commit(self, partition: int, offset: int) -> None: ...
    def assignment(self) -> set[int]: ...
    def pause_all(self) -> None: ...
    def resume_all(self) -> None: ...


class Poster(Protocol):
    """``consumer.notify.webhook.Webhook``."""

    safe_url: str

    def post(self, body: bytes) -> PostResult: ...


@dataclass(slots=True)
class NotifyStats:
    delivered: int = 0
    dead: int = 0
    duplicates: int = 0
    invalid: int = 0
    retries: int = 0


class NotifyBridge:
    """See the module docstring; ``run`` until ``stop_event`` (or a bound) and return the counts."""

    def __init__(
        self,
        *,
        feed: AnomalyFeed,
        webhook: Poster,
        first_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        dedupe_size: int = 100_000,
        poll_s: float = 0.5,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.feed, self.webhook = feed, webhook
        self.first_backoff_s, self.max_backoff_s, self.poll_s = first_backoff_s, max_backoff_s, poll_s
        self.stop_event = threading.Event()
        self._sleep = sleep or self.stop_event.wait
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dedupe_size = dedupe_size
        self._backlog: list[Record] = []
        self.stats = NotifyStats()

    def run(self, *, timeout_s: float | None = None, max_events: int | None = None) -> NotifyStats:
        """Serve until stopped, ``timeout_s`` elapsed or ``max_events`` records settled."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        settled = 0
        while not self.stop_event.is_set() and (deadline is None or time.monotonic() < deadline):
            if max_events is not None and settled >= max_events:
                break
            if not self._backlog:
                try:
                    self._backlog = self.feed.poll(self.poll_s)
                except KafkaUnavailableError as exc:
                    log.warning("anomaly topic unavailable: %s", exc)
                    self._sleep(min(5.0, self.max_backoff_s))
                    continue
            while self._backlog and not self.stop_event.is_set():
                record = self._backlog.pop(0)
                if self._settle(record):
                    settled += 1
        return self.stats

    def _settle(self, record: Record) -> bool:
        """Decide one record and commit it; False when it was abandoned (stop, partition lost)."""
        partition, offset, value = record
        where = f"{self.feed.topic}[{partition}]@{offset}"
        event = _event(value)
        if event is None:
            log.warning("skipping %s: not an anomaly event", where)
            self.stats.invalid += 1
        elif event["anomaly_id"] in self._seen:
            self.stats.duplicates += 1
        elif not self._deliver(event, partition, where):
            return False
        self._commit(partition, offset, where)
        return True

    def _deliver(self, event: dict[str, object], partition: int, where: str) -> bool:
        body, attempt = payload(event), 0
        while True:
            result = self.webhook.post(body)
            if result.outcome is Outcome.DELIVERED:
                self._remember(str(event["anomaly_id"]))
                self.stats.delivered += 1
                if attempt:
                    self.feed.resume_all()
                    log.info(
                        "webhook %s answered again (%s) for %s", self.webhook.safe_url, result.detail, where
                    )
                return True
            if result.outcome is Outcome.DEAD:
                self.stats.dead += 1
                log.error(
                    "webhook %s refused %s (%s): skipped, not retried",
                    self.webhook.safe_url,
                    where,
                    result.detail,
                    extra={"anomaly_id": event["anomaly_id"]},
                )
                if attempt:
                    self.feed.resume_all()
                return True
            attempt += 1
            self.stats.retries += 1
            delay = backoff_delay(self.first_backoff_s, attempt, cap_s=self.max_backoff_s)
            log.warning(
                "webhook %s failed for %s (%s, attempt %d): retrying in %.1fs",
                self.webhook.safe_url,
                where,
                result.detail,
                attempt,
                delay,
            )
            if attempt == 1:
                self.feed.pause_all()
            if not self._wait_in_group(delay, partition, where):
                return False

    def _wait_in_group(self, delay: float, partition: int, where: str) -> bool:
        """Keep polling (paused) for ``delay``; False when stopped or ``partition`` was taken away."""
        until = time.monotonic() + delay
        while not self.stop_event.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return True
            try:
                self._backlog += self.feed.poll(min(left, 1.0))  # a rebalance may assign new partitions
                self.feed.pause_all()
                mine = partition in self.feed.assignment()
            except KafkaUnavailableError as exc:
                log.warning("polling while the webhook is down: %s", exc)
                self._sleep(min(left, 1.0))
                continue
            if not mine:
                log.warning("%s: partition reassigned while retrying; its new owner delivers it", where)
                self._backlog = [r for r in self._backlog if r[0] in self.feed.assignment()]
                self.feed.resume_all()
                return False
        return False

    def _commit(self, partition: int, offset: int, where: str) -> None:
        try:
            self.feed.commit(partition, offset)
        except KafkaUnavailableError as exc:  # redelivered later: the LRU keeps this run from re-POSTing
            log.warning("could not commit %s: %s", where, exc)

    def _remember(self, anomaly_id: str) -> None:
        self._seen[anomaly_id] = None
        if len(self._seen) > self._dedupe_size:
            self._seen.popitem(last=False)


def _event(value: bytes | None) -> dict[str, object] | None:
    try:
        obj = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("anomaly_id"), str) else None
