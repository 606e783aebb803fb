"""One retrain: Mongo snapshot -> candidate model -> validation gate -> promote or reject.

The candidate is of the detector the settings name (``seed`` or ``default``,
:mod:`consumer.retraining.candidates`); the current model may be of either kind.

:meth:`Retrainer.run` makes up to ``max_attempts`` attempts; an attempt that hits a Mongo or
Kafka outage (``MongoUnavailableError`` / ``KafkaUnavailableError``) is abandoned *before*
anything is published — the snapshot is read completely, or not used — and retried after
``backoff_s * 2**k``. Only after the gate has decided does the run write anything:

* promoted: ``ModelStore.publish`` (atomic: temp dir + rename + CURRENT switch), ``report.png`` in
  the version dir, a ``model_versions`` registry document, then a signed ``model_published`` event on
  the status topic (how every consumer instance learns of it; consumers also poll the store);
* rejected: the candidate's files under ``<model_dir>/rejected/<candidate_id>/`` (model.joblib,
  metadata.json, gate.json, report.png; the newest ``keep`` are kept) and a registry document
  with the reasons. The serving model is untouched.

Those after-decision writes are retried on their own and never cause a second training.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import numpy as np
import orjson

from consumer.backoff import backoff_delay
from consumer.ports import KafkaUnavailableError, MongoUnavailableError
from consumer.retraining.candidates import Candidate, TrainingSpec, default_candidate, seed_candidate
from consumer.retraining.gate import GateConfig
from consumer.retraining.labels import LabelDB, load_labels, training_exclusions
from consumer.retraining.outputs import REJECTED_DIR, keep_rejected, write_report
from consumer.retraining.report import REPORT_FILE
from detection import (
    AnomalyModel,
    ChangeDetector,
    ForestParams,
    ModelNotFoundError,
    ModelStore,
    ModelVerificationError,
)
from detection.params import MIN_TRAINING_ITEMS

__all__ = [
    "REJECTED_DIR",
    "RetrainConfig",
    "RetrainOutcome",
    "Retrainer",
    "SnapshotDB",
    "model_published_event",
]

log = logging.getLogger(__name__)

RETRIABLE = (MongoUnavailableError, KafkaUnavailableError)
T = TypeVar("T")


class SnapshotDB(LabelDB, Protocol):
    """The Mongo operations a retrain needs (``consumer.adapters.mongo.WorkerMongo``)."""

    def count_inventory(self) -> int: ...
    def iter_inventory(
        self, *, batch_size: int, exclude: Mapping[str, Any] | None = None, fields: Sequence[str] = ()
    ) -> Any: ...
    def flagged_item_ids(self, collection: str) -> set[str]: ...
    def record_version(self, doc: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class RetrainConfig:
    """Knobs of a retrain (from the ``retrain_*`` / ``gate_*`` settings)."""

    batch_size: int = 5000
    progress_every: int = 100_000
    max_attempts: int = 3
    backoff_s: float = 5.0
    params: ForestParams = field(default_factory=ForestParams)
    exclude_flagged: bool = True
    flagged_collection: str = "anomalies"
    exclude_filter: Mapping[str, Any] | None = None
    gate: GateConfig = field(default_factory=GateConfig)
    sample_size: int = 10_000
    keep_rejected: int = 5
    detector: str = "seed"  # settings `detector`: what the worker trains
    alert_budget_per_1000: float = 0.5  # settings `alert_budget_per_1000` (default detector)
    rules: Sequence[Mapping[str, Any]] | None = None  # settings `rules`, bound into default models
    group_field: str = "category"  # settings `peer_group_field`, bound into default models ("": none)

    def spec(self) -> TrainingSpec:
        """What :mod:`consumer.retraining.candidates` trains and how it is gated."""
        return TrainingSpec(detector=self.detector, params=self.params, alert_budget_per_1000=self.alert_budget_per_1000,
                            rules=self.rules, group_field=self.group_field, gate=self.gate,
                            sample_size=self.sample_size, batch_size=self.batch_size,
                            progress_every=self.progress_every)  # fmt: skip


@dataclass(slots=True)
class RetrainOutcome:
    """What a run ended with; ``status`` is promoted, rejected, insufficient_data or failed."""

    run_id: str
    status: str
    trigger: dict[str, Any]
    detector: str = "seed"
    version: str | None = None
    candidate_id: str | None = None
    reasons: list[str] = field(default_factory=list)
    snapshot: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    training_stats: dict[str, Any] | None = None
    attempts: int = 0
    report: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "promoted"

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


class Retrainer:
    """Runs retrains against ``db`` and ``store``; ``announce(event)`` publishes to the status topic."""

    def __init__(
        self,
        *,
        db: SnapshotDB,
        store: ModelStore,
        announce: Callable[[dict[str, Any]], None],
        config: RetrainConfig,
        sleep: Callable[[float], None] = time.sleep,
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:
        self.db, self.store, self.announce, self.config = db, store, announce, config
        self._sleep, self._on_chunk = sleep, on_chunk

    def run(
        self, trigger: dict[str, Any], *, should_abort: Callable[[], bool] = lambda: False
    ) -> RetrainOutcome:
        """Snapshot, train, gate and promote or reject, retrying outages (see the module docstring)."""
        out = RetrainOutcome(
            run_id=secrets.token_hex(6), status="failed", trigger=dict(trigger), detector=self.config.detector
        )

        def attempt(number: int) -> Candidate | None:
            out.attempts = number
            return self._attempt(out)

        try:
            decided = self._with_backoff(attempt, f"retrain {out.run_id}")
        except RETRIABLE as exc:
            out.status, out.reasons = "failed", [f"attempt {out.attempts}/{out.attempts} failed: {exc}"]
            log.error("retrain %s failed: gave up after %d attempts", out.run_id, out.attempts)
            self._record_best_effort(out, None)
            return out
        if decided is None:
            return out  # insufficient data: nothing trained, nothing to publish
        if should_abort():
            out.status, out.reasons = "failed", ["lost the retrain lease; not publishing"]
            return out
        self._finish(out, decided)
        return out

    # ------------------------------------------------------------------ attempt (retriable)

    def _attempt(self, out: RetrainOutcome) -> Candidate | None:
        cfg = self.config
        labels = load_labels(self.db)  # confirmed items are left out, false positives kept
        flagged = self.db.flagged_item_ids(cfg.flagged_collection) if cfg.exclude_flagged else set()
        spec = cfg.spec()
        more = {"fields": spec.fields} if spec.fields else {}
        docs = self.db.iter_inventory(batch_size=cfg.batch_size, exclude=cfg.exclude_filter, **more)
        make = default_candidate if cfg.detector == "default" else seed_candidate
        current = self._current()
        candidate = make(docs, spec=spec, exclude=training_exclusions(flagged, labels), labels=labels,
                         current=current, expected=self.db.count_inventory(),
                         on_chunk=self._on_chunk)  # fmt: skip
        snap = candidate.snapshot
        out.snapshot = snap.summary() | {"labels": labels.summary()}
        log.info(
            "retrain %s: snapshot read", out.run_id, extra={"run_id": out.run_id, "snapshot": out.snapshot}
        )
        if snap.n_usable < MIN_TRAINING_ITEMS:
            out.status = "insufficient_data"
            out.reasons = [
                f"only {snap.n_usable} usable items (need {MIN_TRAINING_ITEMS}); the current model keeps serving"
            ]
            return None
        candidate.gate.checks["current_version"] = current.version if current is not None else None
        return candidate

    def _current(self) -> AnomalyModel | ChangeDetector | None:
        try:
            return self.store.load_any()
        except ModelNotFoundError:
            return None
        except ModelVerificationError as exc:
            log.warning("current model does not verify (%s); gating without comparison", exc)
            return None

    # ------------------------------------------------------------------ after the decision

    def _finish(self, out: RetrainOutcome, candidate: Candidate) -> None:
        model, gate = candidate.model, candidate.gate
        out.gate = gate.as_dict()
        if model is not None:
            out.training_stats = model.metadata.training_scores.model_dump(mode="json")
        if gate.passed and model is not None:
            out.version = self.store.publish(model)
            out.status = "promoted"
            out.report = write_report(
                self.store.root / out.version / REPORT_FILE, candidate, out.version, promoted=True
            )
        else:
            out.status, out.reasons = "rejected", list(gate.reasons)
            out.candidate_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
            out.report = keep_rejected(
                self.store.root, out.candidate_id, candidate, keep=self.config.keep_rejected
            )
        log.info(
            "retrain %s: %s %s (%s detector)",
            out.run_id,
            out.status,
            out.version or out.candidate_id,
            out.detector,
            extra={"run_id": out.run_id, "status": out.status, "reasons": out.reasons},
        )
        self._record_best_effort(out, model)
        if out.ok and not self._retry(
            lambda: self.announce(model_published_event(out)), "announcing the model"
        ):
            out.reasons.append(
                "published, but the model_published announcement failed: consumers find it by polling the store"
            )

    def _record_best_effort(self, out: RetrainOutcome, model: AnomalyModel | ChangeDetector | None) -> None:
        doc = {
            "_id": out.version or out.candidate_id or f"run-{out.run_id}",
            "recorded_at": datetime.now(UTC).isoformat(),
            **out.as_dict(),
            "metadata": orjson.loads(model.metadata.model_dump_json()) if model is not None else None,
        }
        self._retry(lambda: self.db.record_version(doc), "recording the model registry entry")

    def _retry(self, action: Callable[[], None], what: str) -> bool:
        """``action()`` with retries; False (logged) when every attempt hit an outage."""
        try:
            self._with_backoff(lambda _number: action(), what)
        except RETRIABLE:
            log.error("%s gave up after %d attempts", what, self.config.max_attempts)
            return False
        return True

    def _with_backoff(self, action: Callable[[int], T], what: str) -> T:
        """``action(attempt_number)``, retried on outages after ``backoff_s * 2**k``; the last one raises."""
        attempts = self.config.max_attempts
        for number in range(1, attempts):
            try:
                return action(number)
            except RETRIABLE as exc:
                log.warning("%s failed (attempt %d/%d): %s", what, number, attempts, exc)
                self._sleep(backoff_delay(self.config.backoff_s, number))
        return action(attempts)


def model_published_event(out: RetrainOutcome) -> dict[str, Any]:
    """The ``model_published`` status event of a promoted run (``at``, like every status message)."""
    now = datetime.now(UTC).isoformat()
    return {
        "type": "model_published",
        "version": out.version,
        "n_samples": out.snapshot.get("usable"),
        "training_stats": out.training_stats,
        "trigger": out.trigger,
        "command_id": out.trigger.get("command_id"),
        "run_id": out.run_id,
        "gate": out.gate,
        "detector": out.detector,
        "report": out.report,
        "published_at": now,
        "anomaly_rate": float(np.round(out.gate.get("checks", {}).get("training_anomaly_rate", 0.0), 6)),
        "at": now,
    }
