"""Output events of `stockwatch consume` and dead-letter records — pure, no I/O.

The pydantic models here are the *documentation* of the event format: their JSON Schema is
committed as ``docs/schemas/*.schema.json`` (regenerate with ``python -m consumer.wire.events``).
The hot path does not instantiate them: :mod:`consumer.scoring.batch` builds plain dicts of the same
shape and serialises them with orjson; a unit test validates those dicts against the models.

``anomaly_id`` is a pure function of the source coordinates and the model version, so a
redelivered input scored by the same model yields the same id (consumers deduplicate on it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, create_model

from detection import FEATURE_NAMES
from detection.explain import Severity

__all__ = [
    "DLQ_HEADER_ERROR",
    "DLQ_HEADER_REASON",
    "DLQ_HEADER_SOURCE_OFFSET",
    "DLQ_HEADER_SOURCE_PARTITION",
    "DLQ_HEADER_SOURCE_TIMESTAMP",
    "DLQ_HEADER_SOURCE_TOPIC",
    "EVENT_SCHEMA_VERSION",
    "SCHEMA_DIR",
    "AnomalyEvent",
    "DecisionEvent",
    "DlqReason",
    "EventItem",
    "Features",
    "SourceCoordinates",
    "anomaly_id",
    "dlq_headers",
    "render_schemas",
]

EVENT_SCHEMA_VERSION: Final = 1
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"
ANOMALY_ID_HEX_CHARS = 32
MAX_ERROR_HEADER_CHARS = 1000

DLQ_HEADER_REASON = "dlq.reason"
DLQ_HEADER_ERROR = "dlq.error"
DLQ_HEADER_SOURCE_TOPIC = "dlq.source.topic"
DLQ_HEADER_SOURCE_PARTITION = "dlq.source.partition"
DLQ_HEADER_SOURCE_OFFSET = "dlq.source.offset"
DLQ_HEADER_SOURCE_TIMESTAMP = "dlq.source.timestamp"


class DlqReason(StrEnum):
    """Why a message went to the dead-letter topic (the ``dlq.reason`` header)."""

    OVERSIZE = "oversize"  # value longer than max_message_bytes; not decoded at all
    EMPTY = "empty"  # null (tombstone) or zero-length value
    INVALID_JSON = "invalid_json"  # not UTF-8 JSON (orjson is strict: no NaN literals)
    NOT_AN_OBJECT = "not_an_object"  # JSON, but an array / string / number / null
    INVALID_ITEM = "invalid_item"  # an object that fails item validation (missing id, NaN, booleans...)


def anomaly_id(topic: str, partition: int, offset: int, model_version: str) -> str:
    """Deterministic id of the decision on one input record by one model version (hex)."""
    raw = f"{topic}\x1f{partition}\x1f{offset}\x1f{model_version}".encode()
    return hashlib.sha256(raw).hexdigest()[:ANOMALY_ID_HEX_CHARS]


def dlq_headers(
    reason: DlqReason,
    error: str,
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int | None,
    original: Sequence[tuple[str, bytes]] = (),
) -> list[tuple[str, bytes]]:
    """Headers of a dead-letter record: the original headers, then reason and source coordinates."""
    headers = list(original)
    headers += [
        (DLQ_HEADER_REASON, reason.value.encode()),
        (DLQ_HEADER_ERROR, error[:MAX_ERROR_HEADER_CHARS].encode("utf-8", "replace")),
        (DLQ_HEADER_SOURCE_TOPIC, topic.encode()),
        (DLQ_HEADER_SOURCE_PARTITION, str(partition).encode()),
        (DLQ_HEADER_SOURCE_OFFSET, str(offset).encode()),
        (DLQ_HEADER_SOURCE_TIMESTAMP, b"" if timestamp is None else str(timestamp).encode()),
    ]
    return headers


# ---------------------------------------------------------------------------- event models

_STRICT = ConfigDict(extra="forbid", frozen=True)


class SourceCoordinates(BaseModel):
    """Where the scored input record was read."""

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


Features: type[BaseModel] = create_model(  # the 7 features, by name, in FEATURE_NAMES order
    "Features",
    __config__=_STRICT,
    __doc__="The 7 features the model scored, by name (detection.FEATURE_NAMES).",
    **{name: (float, ...) for name in FEATURE_NAMES},  # type: ignore[call-overload]
)


class DecisionEvent(BaseModel):
    """One scoring decision (published to ``decisions_topic`` when set, for every valid input)."""

    model_config = _STRICT

    schema_version: Literal[1] = 1
    anomaly_id: str = Field(
        pattern=f"^[0-9a-f]{{{ANOMALY_ID_HEX_CHARS}}}$",
        description="sha256(topic, partition, offset, model_version) hex prefix: same input + model => same id.",
    )
    item_id: str
    event_id: str | None = Field(default=None, description="The input's `event_id`, when it had one.")
    is_anomaly: bool
    score: float = Field(description="Model score (sklearn decision_function scale); lower = more anomalous.")
    threshold: float = Field(description="The model's threshold: score < threshold => anomaly.")
    model_version: str
    features: Features  # type: ignore[valid-type]
    source: SourceCoordinates
    detected_at: datetime = Field(description="When the batch was scored (UTC, ISO 8601).")


class AnomalyEvent(DecisionEvent):
    """One anomalous item state, published to ``anomaly_topic`` keyed by item id."""

    is_anomaly: Literal[True] = True
    item: EventItem = Field(description="The validated item state that was scored.")
    severity: Severity = Field(description="How far below the threshold the score is (detection.explain).")
    reasons: list[str] = Field(description="Human-readable reasons, most important first.")


def render_schemas() -> dict[str, bytes]:
    """The JSON Schema files as committed under ``docs/schemas`` (file name -> bytes)."""
    out = {}
    for name, model in (("anomaly-event", AnomalyEvent), ("decision-event", DecisionEvent)):
        schema = model.model_json_schema(mode="serialization")
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
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
