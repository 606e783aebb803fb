"""One retrain: Mongo snapshot -> candidate model -> validation gate -> promote or reject.

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
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import joblib
import numpy as np
import orjson

from consumer.backoff import backoff_delay
from consumer.ports import KafkaUnavailableError, MongoUnavailableError
from consumer.retraining.gate import (
    GateConfig,
    GateResult,
    check_labelled_precision,
    check_snapshot,
    evaluate,
)
from consumer.retraining.labels import LabelDB, load_labels, training_exclusions
from consumer.retraining.report import REPORT_FILE, render_report
from consumer.retraining.snapshot import Snapshot, collect
from detection import (
    AnomalyModel,
    ForestParams,
    ModelNotFoundError,
    ModelStore,
    ModelVerificationError,
    TrainingError,
)
from detection.params import MIN_TRAINING_ITEMS

__all__ = ["RetrainConfig", "RetrainOutcome", "Retrainer", "SnapshotDB"]

log = logging.getLogger(__name__)

RETRIABLE = (MongoUnavailableError, KafkaUnavailableError)
T = TypeVar("T")
REJECTED_DIR = "rejected"


class SnapshotDB(LabelDB, Protocol):
    """The Mongo operations a retrain needs (``consumer.adapters.mongo.WorkerMongo``)."""

    def count_inventory(self) -> int: ...
    def iter_inventory(self, *, batch_size: int, exclude: Mapping[str, Any] | None = None) -> Any: ...
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


@dataclass(slots=True)
class RetrainOutcome:
    """What a run ended with; ``status`` is promoted, rejected, insufficient_data or failed."""

    run_id: str
    status: str
    trigger: dict[str, Any]
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
        out = RetrainOutcome(run_id=secrets.token_hex(6), status="failed", trigger=dict(trigger))

        def attempt(number: int) -> tuple[AnomalyModel | None, Snapshot, GateResult] | None:
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
        self._finish(out, *decided)
        return out

    # ------------------------------------------------------------------ attempt (retriable)

    def _attempt(self, out: RetrainOutcome) -> tuple[AnomalyModel | None, Snapshot, GateResult] | None:
        cfg = self.config
        labels = load_labels(self.db)  # confirmed items are left out, false positives kept
        flagged = self.db.flagged_item_ids(cfg.flagged_collection) if cfg.exclude_flagged else set()
        exclude = training_exclusions(flagged, labels)
        docs = self.db.iter_inventory(batch_size=cfg.batch_size, exclude=cfg.exclude_filter)
        snap = collect(
            docs,
            chunk_size=cfg.batch_size,
            exclude_ids=exclude,
            expected=self.db.count_inventory(),
            progress_every=cfg.progress_every,
            on_chunk=self._on_chunk,
        )
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
        pre = check_snapshot(snap.features)
        if not pre.passed:
            return None, snap, pre
        try:
            model = train_model_on(snap, cfg.params)
        except TrainingError as exc:
            return None, snap, GateResult(reasons=[f"training failed: {exc}"], checks=pre.checks)
        current = self._current()
        result = evaluate(
            model, snap.features, snap.sample(cfg.sample_size), current=current, config=cfg.gate
        )
        check_labelled_precision(
            model, current, labels.features, labels.confirmed, min_labels=cfg.gate.min_labels, result=result
        )
        result.checks["current_version"] = current.version if current is not None else None
        return model, snap, result

    def _current(self) -> AnomalyModel | None:
        try:
            return self.store.load()
        except ModelNotFoundError:
            return None
        except ModelVerificationError as exc:
            log.warning("current model does not verify (%s); gating without comparison", exc)
            return None

    # ------------------------------------------------------------------ after the decision

    def _finish(
        self, out: RetrainOutcome, model: AnomalyModel | None, snap: Snapshot, gate: GateResult
    ) -> None:
        out.gate = gate.as_dict()
        if model is not None:
            out.training_stats = model.metadata.training_scores.model_dump(mode="json")
        if gate.passed and model is not None:
            out.version = self.store.publish(model)
            out.status = "promoted"
            out.report = self._report(self.store.root / out.version / REPORT_FILE, model, snap, out.version)
        else:
            out.status, out.reasons = "rejected", list(gate.reasons)
            out.candidate_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
            if model is not None:
                out.report = self._keep_rejected(out, model, snap)
        log.info(
            "retrain %s: %s %s",
            out.run_id,
            out.status,
            out.version or out.candidate_id,
            extra={"run_id": out.run_id, "status": out.status, "reasons": out.reasons},
        )
        self._record_best_effort(out, model)
        if out.ok and not self._retry(
            lambda: self.announce(model_published_event(out)), "announcing the model"
        ):
            out.reasons.append(
                "published, but the model_published announcement failed: consumers find it by polling the store"
            )

    def _report(self, path: Path, model: AnomalyModel, snap: Snapshot, title: str) -> str | None:
        try:
            rows = snap.sample(self.config.sample_size * 10)
            return str(
                render_report(
                    path, scores=model.score(rows), features=rows, threshold=model.threshold, title=title
                )
            )
        except Exception as exc:  # a report is informational; never fail a retrain on it
            log.warning("could not render the model report %s: %r", path, exc)
            return None

    def _keep_rejected(self, out: RetrainOutcome, model: AnomalyModel, snap: Snapshot) -> str | None:
        root = self.store.root / REJECTED_DIR
        target = root / str(out.candidate_id)
        target.mkdir(parents=True, exist_ok=True)
        joblib.dump({"scaler": model.scaler, "forest": model.forest}, target / "model.joblib")
        (target / "metadata.json").write_text(model.metadata.model_dump_json(indent=2))
        (target / "gate.json").write_bytes(orjson.dumps(out.gate, option=orjson.OPT_INDENT_2))
        report = self._report(target / REPORT_FILE, model, snap, f"REJECTED {out.candidate_id}")
        for old in sorted(p for p in root.iterdir() if p.is_dir())[: -self.config.keep_rejected]:
            shutil.rmtree(old, ignore_errors=True)
        return report

    def _record_best_effort(self, out: RetrainOutcome, model: AnomalyModel | None) -> None:
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


def train_model_on(snap: Snapshot, params: ForestParams) -> AnomalyModel:
    """Train on the snapshot's feature matrix (no per-item objects are ever built)."""
    from detection import train_on_features

    return train_on_features(snap.features, params)


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
        "report": out.report,
        "published_at": now,
        "anomaly_rate": float(np.round(out.gate.get("checks", {}).get("training_anomaly_rate", 0.0), 6)),
        "at": now,
    }
