"""The documented shapes of every event and line StockWatch emits, and their committed JSON Schemas.

The pydantic models here are the *documentation*: ``python -m consumer.wire.schemas`` writes their
JSON Schemas to ``docs/schemas/*.schema.json`` (a unit test fails when a file is stale), and tests
validate real output against those files. The hot path never instantiates them: events are built
as plain dicts by :func:`consumer.wire.events.build_events`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, RootModel, TypeAdapter, create_model

from consumer.wire.dlq import DlqHeaders
from consumer.wire.episode_events import EPISODE_ID_HEX_CHARS
from consumer.wire.events import ANOMALY_ID_HEX_CHARS
from consumer.wire.feedback import FeedbackMessage
from consumer.wire.messages import (
    CtlLine,
    DetectorModelsShow,
    EvalReport,
    ModelsList,
    ModelsRollback,
    ModelsShow,
    SignedCommand,
    StatusMessage,
    SuppressionRow,
    TrainSummary,
)
from detection import CHANGE_FEATURE_NAMES, FEATURE_NAMES
from detection.explain import Severity

__all__ = [
    "SCHEMAS",
    "SCHEMA_DIR",
    "AnomalyEvent",
    "AnomalyTopicEvent",
    "ChangeFeatures",
    "DecisionEvent",
    "EventItem",
    "EventLinks",
    "Features",
    "ResolvedEvent",
    "ResolvedWebhookPayload",
    "ScanSummary",
    "ScoreLine",
    "SourceCoordinates",
    "WebhookPayload",
    "render_schemas",
]

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_STRICT = ConfigDict(extra="forbid", frozen=True)


class SourceCoordinates(BaseModel):
    """Where the scored input was read.

    ``consume``: the Kafka record. ``score``: ``file:<path as given>`` or ``stdin``, partition 0,
    offset = line number (from 1). ``scan``: ``mongo:<db>.<collection>``, partition 0, offset = row.
    """

    model_config = _STRICT

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    timestamp: int | None = Field(default=None, description="Kafka record timestamp, ms since the epoch.")


class EventItem(BaseModel):
    """The validated item state (detection.StockItem's fields, defaults applied, aliases resolved)."""

    model_config = _STRICT

    item_id: str
    event_id: str | None = None
    stock_quantity: float
    min_stock_level: float
    max_stock_level: float
    price: float
    attributes: dict[str, Any] | None = Field(
        default=None,
        description="Anomaly events of `consume` and `score`: the input fields the detector does not read "
        "(a warehouse id, a supplier...), as sent, within `attributes_max_fields` and `attributes_max_bytes`.",
    )
    attributes_truncated: bool | None = Field(
        default=None, description="True when some input fields were left out of `attributes` (over a bound)."
    )


class EventLinks(BaseModel):
    """Where the model version that decided lives (``file://`` URIs, or ``report_url_template``)."""

    model_config = _STRICT

    model: str | None = Field(
        description="The version's directory in the model store (metadata.json, gate.json); null when "
        "the version is not published there (`unversioned`, a model built in process)."
    )
    report: str | None = Field(
        description="The version's report (score histogram, features): `report_url_template` with the "
        "version, else the file:// URI of its report.png; null until the retrain worker wrote one."
    )


Features: type[BaseModel] = create_model(  # the 7 features, by name, in FEATURE_NAMES order
    "Features",
    __config__=_STRICT,
    __doc__="The 7 features the model scored, by name (detection.FEATURE_NAMES).",
    **{name: (float, ...) for name in FEATURE_NAMES},  # type: ignore[call-overload]
)

ChangeFeatures: type[BaseModel] = create_model(  # the default detector's change features
    "ChangeFeatures",
    __config__=_STRICT,
    __doc__="The change features the `default` detector scored, by name (detection.CHANGE_FEATURE_NAMES).",
    **{name: (float, ...) for name in CHANGE_FEATURE_NAMES},  # type: ignore[call-overload]
)


class DecisionEvent(BaseModel):
    """One scoring decision (``decisions_topic`` of consume; the normal lines of ``score``)."""

    model_config = _STRICT

    schema_version: Literal[1] = 1
    anomaly_id: str = Field(
        pattern=f"^[0-9a-f]{{{ANOMALY_ID_HEX_CHARS}}}$",
        description="Hex prefix of sha256(topic, partition, offset, model_version); for `score`, of "
        "sha256(topic, partition, offset, model_version, digest of the input up to the line); for `scan`, "
        "of sha256(source topic, item_id, model_version). Same input + model => same id.",
    )
    item_id: str
    event_id: str | None = Field(default=None, description="The input's `event_id`, when it had one.")
    is_anomaly: bool
    score: float = Field(description="Model score (sklearn decision_function scale); lower = more anomalous.")
    threshold: float = Field(description="The model's threshold: score < threshold => anomaly.")
    model_version: str = Field(description="The model's version id; `unversioned` if it never had one.")
    features: Features | ChangeFeatures  # type: ignore[valid-type]
    source: SourceCoordinates
    detected_at: datetime = Field(description="When the batch was scored (UTC, ISO 8601).")
    severity_score: float | None = Field(
        default=None, ge=0.0, le=100.0,
        description="`default` detector only: calibrated 0-100 severity (50 = the alert budget's "
        "threshold; a firing data-quality rule gives at least its severity, 85 by default).",
    )  # fmt: skip


def _episode_id(**default: Any) -> Any:
    return Field(
        **default,
        pattern=f"^[0-9a-f]{{{EPISODE_ID_HEX_CHARS}}}$",
        description="Hex prefix of sha256(input topic, partition, offset of the opening update, item_id): "
        "the same for every event of one episode, and for a replay of the same input.",
    )


class AnomalyEvent(DecisionEvent):
    """One anomalous item state (``anomaly_topic`` keyed by item id; ``scan``; anomalous ``score`` lines).

    With ``alert_mode = "episodes"`` (the `default` detector in `consume`) only the update that opens
    an episode (``status: open``), raises its severity a level (``escalated``) or re-notifies it
    (``open`` with ``renotified: true``) is published, with the episode fields; with
    ``every-update`` (and for seed models) every anomalous update, without them.

    On the anomaly topic its record also carries the input record's headers named in
    ``propagate_headers`` (``traceparent``, ``trace-id``, ``correlation-id`` by default), as sent.
    """

    is_anomaly: Literal[True] = True
    item: EventItem = Field(description="The validated item state that was scored.")
    severity: Severity = Field(
        description="How far below the threshold the score is (detection.explain); for the `default` "
        "detector the level of `severity_score` (low < 65 <= medium < 80 <= high < 95 <= critical)."
    )
    reasons: list[str] = Field(description="Human-readable reasons, most important first.")
    kind: Literal["data_quality", "model"] | None = Field(
        default=None,
        description="`default` detector only: a data-quality rule fired, or the model flagged it.",
    )
    rules: list[str] | None = Field(
        default=None, description="`default` detector only: names of the rules that fired."
    )
    links: EventLinks | None = Field(
        default=None, description="`consume` and `score`: the model version's directory and report."
    )
    status: Literal["open", "escalated"] | None = Field(
        default=None, description="Episodes: `open` (a new episode, or renotified) or `escalated`."
    )
    episode_id: str | None = _episode_id(default=None)
    first_seen: datetime | None = Field(
        default=None, description="Episodes: event time of the opening update."
    )
    last_seen: datetime | None = Field(
        default=None, description="Episodes: event time of the latest anomalous update."
    )
    occurrences: int | None = Field(default=None, ge=1, description="Episodes: anomalous updates so far.")
    max_severity: Severity | None = Field(default=None, description="Episodes: highest severity so far.")
    renotified: bool | None = Field(
        default=None,
        description="Episodes: present (true) on an `open` event sent again after renotify_after_s.",
    )


class ResolvedEvent(DecisionEvent):
    """The end of an alert episode: ``resolve_after`` consecutive normal updates of its item
    (``anomaly_topic``, ``alert_mode = "episodes"``); the decision event of the update that resolved it."""

    is_anomaly: Literal[False] = False
    item: EventItem = Field(description="The item state of the resolving update.")
    links: EventLinks | None = Field(
        default=None, description="The model version's directory and report (as on anomaly events)."
    )
    status: Literal["resolved"] = "resolved"
    episode_id: str = _episode_id()
    first_seen: datetime = Field(description="Event time of the update that opened the episode.")
    last_seen: datetime = Field(description="Event time of the episode's last anomalous update.")
    resolved_at: datetime = Field(description="Event time of the resolving update.")
    duration_s: float = Field(ge=0, description="resolved_at - first_seen, seconds.")
    occurrences: int = Field(ge=1, description="Anomalous updates in the episode.")
    max_severity: Severity = Field(description="The highest severity of the episode.")


class AnomalyTopicEvent(RootModel[AnomalyEvent | ResolvedEvent]):
    """A record of ``anomaly_topic``: an anomaly event (with episode fields in alert_mode episodes), or
    an episode's resolved event (``is_anomaly: false``, ``status: resolved``)."""


class WebhookPayload(AnomalyEvent):
    """What ``stockwatch notify`` POSTs: the anomaly event plus a Slack-compatible ``text``."""

    text: str = Field(
        max_length=500, description="One line: `[SEVERITY] item: first reason (model version)`."
    )


class ResolvedWebhookPayload(ResolvedEvent):
    """What ``stockwatch notify`` POSTs for a resolved episode: the event plus ``text``."""

    text: str = Field(max_length=500, description="One line: `[RESOLVED] item: … (model version)`.")


class ScoreLine(RootModel[AnomalyEvent | DecisionEvent]):
    """A line of ``stockwatch score``: an anomaly event when anomalous, else a decision event."""


class ScanSummary(BaseModel):
    """The last line ``stockwatch scan`` prints on stderr (its anomalies are anomaly events)."""

    model_config = _STRICT

    scanned: int = Field(ge=0, description="Valid items scored.")
    anomalies: int = Field(ge=0)
    invalid: int = Field(ge=0, description="Documents skipped as invalid items.")
    model_version: str


# name of the file under docs/schemas (without .schema.json) -> what it documents
SCHEMAS: dict[str, Any] = {
    "anomaly-event": AnomalyEvent,
    "decision-event": DecisionEvent,
    "score-line": ScoreLine,
    "scan-summary": ScanSummary,
    "dlq-headers": DlqHeaders,
    "control-command": SignedCommand,
    "status-message": StatusMessage,
    "ctl-line": CtlLine,
    "train-summary": TrainSummary,
    "models-list": ModelsList,
    "models-show": DetectorModelsShow | ModelsShow,
    "models-rollback": ModelsRollback,
    "eval-report": EvalReport,
    "feedback-message": FeedbackMessage,
    "webhook-payload": WebhookPayload | ResolvedWebhookPayload,
    "resolved-event": ResolvedEvent,
    "anomaly-topic-event": AnomalyTopicEvent,
    "suppressions-list": SuppressionRow,
}


def render_schemas() -> dict[str, bytes]:
    """The JSON Schema files as committed under ``docs/schemas`` (file name -> bytes)."""
    out = {}
    for name, shape in SCHEMAS.items():
        schema = TypeAdapter(shape).json_schema(mode="serialization")
        schema = {"$schema": JSON_SCHEMA_DIALECT, **schema}
        out[f"{name}.schema.json"] = (
            orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
    return out


def _write_schemas(directory: Path = SCHEMA_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in render_schemas().items():
        (directory / name).write_bytes(data)
        print(f"wrote {directory / name}")


if __name__ == "__main__":
    _write_schemas()
