"""Which model scores the next batch: swaps between batches, and a paused wait while there is none.

The :class:`ModelWatcher` loads models off the loop; :meth:`ModelGate.current` hands the newest to
the loop between batches (every event of a batch is scored by one version). Without a model,
:meth:`ModelGate.wait` pauses every assigned partition and rewinds anything already polled
(logged once, ``stockwatch_waiting_for_model`` = 1, ``/readyz`` says so): nothing is committed,
nothing is dropped.
"""

from __future__ import annotations

import logging
from datetime import datetime

from consumer.ports import Source, start_offset
from consumer.scoring.batch import UNVERSIONED
from consumer.scoring.health import HealthState
from consumer.scoring.metrics import ConsumerMetrics
from consumer.scoring.model_watcher import ModelWatcher
from consumer.scoring.serving import ServedModel

__all__ = ["ModelGate"]

log = logging.getLogger(__name__)


class ModelGate:
    """The serving model of the loop, and what is reported about it."""

    def __init__(
        self,
        watcher: ModelWatcher,
        source: Source,
        metrics: ConsumerMetrics,
        health: HealthState,
    ) -> None:
        self.watcher = watcher
        self.source = source
        self.metrics = metrics
        self.health = health
        self.model: ServedModel | None = None
        self._paused = False
        self._announced_wait = False

    def current(self, versions: list[str]) -> ServedModel | None:
        """The model for the next batch (a newly loaded one is appended to ``versions``)."""
        model = self.watcher.take()
        if model is None:
            return self.model
        old = self.model.version if self.model is not None else None
        self.model = model
        version = model.version or UNVERSIONED
        versions.append(version)
        self.health.model_version = version
        self.metrics.model.info({"version": version})
        self.metrics.model_loaded.set(1)
        self.metrics.model_swaps.inc()
        self.metrics.set_model_created(_created(model))  # the age is computed when scraped
        if self._paused:
            self.source.resume_all()
            self._paused = False
            self.health.waiting_for_model = False
            self.metrics.waiting_for_model.set(0)
            log.info("model %s loaded: resuming consumption", version)
        else:
            log.info("model swapped %s -> %s between batches", old, version)
        return model

    def wait(self, poll_timeout_ms: int, max_poll_records: int) -> None:
        """Keep the group membership alive without consuming; rewind anything polled."""
        if not self._paused:
            self.health.waiting_for_model = True
            self.metrics.waiting_for_model.set(1)
            self._paused = True
            self._announced_wait = False
        if not self._announced_wait and self.watcher.first_check_done.is_set():
            self._announced_wait = True  # logged once, after the watcher has looked at the store
            log.warning("no usable model yet: partitions paused, nothing is consumed until one is published")
        self.source.pause_all()  # every iteration: partitions assigned by a rebalance too
        polled = self.source.poll(poll_timeout_ms, max_poll_records)
        if polled:
            self.source.seek({tp: start_offset(recs[0]) for tp, recs in polled.items()})


def _created(model: ServedModel | None) -> float | None:
    created = getattr(getattr(model, "metadata", None), "created_at", None)
    return created.timestamp() if isinstance(created, datetime) else None
