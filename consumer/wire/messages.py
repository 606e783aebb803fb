"""The documented shapes of the control/status topics and of the CLI's JSON lines — pure, no I/O.

Documentation models (see :mod:`consumer.wire.schemas`): the retrain worker and the CLI build
plain dicts; tests validate what they really emit against the schemas rendered from these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from consumer.wire.control import Ack, Command, CommandName
from detection.detector_meta import DetectorMetadata
from detection.metadata import ModelMetadata
from detection.params import ForestParams

__all__ = [
    "CommandAck",
    "CtlLine",
    "CtlSent",
    "DetectorModelsShow",
    "EvalReport",
    "EvalResultRow",
    "FeedbackCounts",
    "ModelListRow",
    "ModelPublished",
    "ModelsList",
    "ModelsRollback",
    "ModelsShow",
    "RetrainFinished",
    "SignedCommand",
    "StatusMessage",
    "SuppressionRow",
    "TrainSummary",
]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class SignedCommand(Command):
    """A command on ``stockwatch.control``: HMAC-SHA256 (``STOCKWATCH_CONTROL_KEY``) over the canonical
    JSON (sorted keys, no whitespace) of every other field. ``rollback`` needs ``args.version``."""

    signature: str = Field(pattern="^[0-9a-f]{64}$", description="Hex HMAC-SHA256.")


# ---------------------------------------------------------------------------- stockwatch.status


class CommandAck(BaseModel):
    """The worker's answer to a command: ``accepted`` first for a retrain, then one terminal status."""

    model_config = _STRICT

    type: Literal["command_ack"]
    status: Ack
    command_id: str | None = Field(description="Null only for a rejected command whose id was unreadable.")
    command: str | None = Field(description="The command's name, as sent (null when unreadable).")
    worker: str = Field(description="Which worker answered (host-pid-random).")
    reason: str | None = Field(default=None, description="Why (rejections, failures, coalescing).")
    result: dict[str, Any] | None = Field(
        default=None, description="e.g. {version} after rollback/reload, the outcome of a retrain."
    )
    digest: str | None = Field(
        default=None, description="A rejection's sha256 of the raw message it answers (hex)."
    )
    at: datetime
    signature: str | None = Field(
        default=None,
        pattern="^[0-9a-f]{64}$",
        description="Hex HMAC-SHA256 with the control key over the message without this field "
        "(absent when the worker has no key; ctl and the consumer ignore unsigned messages).",
    )


class ModelPublished(BaseModel):
    """A new CURRENT model: every ``consume`` instance loads it. A retrain's announcement has every
    field; a rollback's or reload's only ``type``, ``version``, ``trigger``, ``command_id`` and ``at``."""

    model_config = _STRICT

    type: Literal["model_published"]
    version: str
    trigger: dict[str, Any] = Field(description="What caused it: {kind, by, command_id} or a schedule.")
    command_id: str | None
    n_samples: int | None = None
    training_stats: dict[str, Any] | None = None
    run_id: str | None = None
    gate: dict[str, Any] | None = None
    detector: Literal["seed", "default"] | None = Field(
        default=None, description="The published model's detector."
    )
    report: str | None = Field(default=None, description="Path of the run's PNG report.")
    published_at: datetime | None = None
    anomaly_rate: float | None = None
    at: datetime
    signature: str | None = Field(
        default=None,
        pattern="^[0-9a-f]{64}$",
        description="Hex HMAC-SHA256 with the control key over the message without this field "
        "(absent when the worker has no key; ctl and the consumer ignore unsigned messages).",
    )


class RetrainFinished(BaseModel):
    """A retrain run ended (any status); the terminal ``command_ack`` follows for a commanded run."""

    model_config = _STRICT

    type: Literal["retrain_finished"]
    command_id: str | None
    result: dict[str, Any]
    at: datetime
    signature: str | None = Field(
        default=None,
        pattern="^[0-9a-f]{64}$",
        description="Hex HMAC-SHA256 with the control key over the message without this field "
        "(absent when the worker has no key; ctl and the consumer ignore unsigned messages).",
    )


class StatusMessage(
    RootModel[Annotated[CommandAck | ModelPublished | RetrainFinished, Field(discriminator="type")]]
):
    """A message on ``stockwatch.status``."""


# ---------------------------------------------------------------------------- CLI output


class CtlSent(BaseModel):
    """``stockwatch ctl``'s first line: the command went out."""

    model_config = _STRICT

    sent: CommandName
    command_id: str


class CtlLine(RootModel[CtlSent | CommandAck]):
    """A line ``stockwatch ctl`` prints: the sent line, then the command's acknowledgement (unless
    ``--no-wait``)."""


class TrainSummary(BaseModel):
    """``stockwatch train``'s JSON summary on stdout."""

    model_config = _STRICT

    version: str
    model_dir: str
    n_samples: int = Field(ge=1)
    rejected_lines: int = Field(ge=0)
    threshold: float
    offset: float = Field(description="The forest's offset_ (training-set percentile of score 0).")
    anomaly_rate: float = Field(
        ge=0.0, le=1.0,
        description="Share of the training items flagged (`default`: of its synthetic normal updates, "
        "about the alert budget / 1000).",
    )  # fmt: skip
    training_seconds: float = Field(ge=0.0)
    params: ForestParams = Field(
        description="`default`: without `contamination` (its alert budget sets the threshold)."
    )
    detector: Literal["seed", "default"] = Field(default="seed", description="The detector trained.")
    alert_budget_per_1000: float | None = Field(
        default=None, description="`default` only: model alerts per 1,000 normal updates."
    )
    group_field: str | None = Field(
        default=None, max_length=200,
        description='`default` only: the peer-group field bound into the model ("": no peer grouping).',
    )  # fmt: skip


class ModelListRow(BaseModel):
    """One stored version (an unreadable one has ``error`` set and nulls)."""

    model_config = _STRICT

    version: str
    created_at: datetime | None
    n_samples: int | None
    threshold: float | None
    is_current: bool
    signed: bool
    error: str | None
    detector: Literal["seed", "default"] | None = None


class EvalResultRow(BaseModel):
    """One detector's quality on one replay (detection.evaluation.EvalResult)."""

    model_config = _STRICT

    detector: Literal["seed", "default"]
    n_events: int = Field(ge=0, description="Events scored (rejected ones excluded).")
    n_errors: int = Field(ge=0, description="Labelled events among them.")
    average_precision: float = Field(ge=0.0, le=1.0)
    roc_auc: float = Field(ge=0.0, le=1.0)
    precision: float = Field(ge=0.0, le=1.0, description="At the detector's default threshold.")
    recall: float = Field(ge=0.0, le=1.0, description="At the detector's default threshold.")
    alerts_per_1000: float = Field(ge=0.0, le=1000.0)
    auc_per_kind: dict[str, float] = Field(
        description="ROC-AUC of each labelled kind against all normal events."
    )
    n_rejected: int = Field(ge=0, description="Events rejected (missing_field) and not scored.")
    seconds: float = Field(ge=0.0, description="Training plus replay.")


class EvalReport(RootModel[dict[str, EvalResultRow]]):
    """``stockwatch eval --json``: one result per detector, by name."""


class ModelsList(RootModel[list[ModelListRow]]):
    """``stockwatch models list --json``: stored versions, oldest first."""


class ModelsRollback(BaseModel):
    """``stockwatch models rollback``'s line."""

    model_config = _STRICT

    current: str
    previous: str | None


# ---------------------------------------------------------------------------- feedback


class FeedbackCounts(BaseModel):
    """Analyst labels of one model version's anomalies (the registry's ``feedback`` field)."""

    model_config = _STRICT

    confirmed: int = Field(ge=0)
    false_positive: int = Field(ge=0)
    precision: float | None = Field(
        ge=0, le=1, description="confirmed / (confirmed + false_positive); null before any label."
    )
    updated_at: str | None = Field(default=None, description="When the worker last counted (UTC).")


class ModelsShow(ModelMetadata):
    """``stockwatch models show``: the version's metadata, plus its feedback counts when Mongo answers."""

    feedback: FeedbackCounts | None = Field(
        default=None, description="Absent when the model registry (Mongo) could not be read in time."
    )


class DetectorModelsShow(DetectorMetadata):
    """``stockwatch models show`` of a ``default`` detector: its metadata, plus its feedback counts."""

    feedback: FeedbackCounts | None = Field(
        default=None, description="Absent when the model registry (Mongo) could not be read in time."
    )


class SuppressionRow(BaseModel):
    """A line of ``stockwatch suppressions list --json``: one active suppression."""

    model_config = _STRICT

    id: str = Field(description="The labelled episode it came from.")
    item_id: str
    reason: str | None = Field(description="Only events with a reason starting with this; null = any.")
    expires_at: datetime
    created_at: datetime | None
    who: str | None
    note: str | None
