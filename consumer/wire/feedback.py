"""Analyst feedback on ``feedback_topic``: one small JSON message per label — pure, no I/O.

``stockwatch feedback EPISODE_ID confirmed|false_positive`` builds it (:func:`build_feedback`),
keyed by the episode id; the retrain worker reads it back (:func:`parse_feedback`). ``episode_id``
is an episode event's ``episode_id`` (``alert_mode=episodes``) or an anomaly event's ``anomaly_id``
(``alert_mode=every-update``, seed models).
Schema: ``docs/schemas/feedback-message.schema.json`` (:class:`FeedbackMessage`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "MAX_NOTE_CHARS",
    "UNKNOWN_MODEL_VERSION",
    "FeedbackError",
    "FeedbackLabel",
    "FeedbackMessage",
    "build_feedback",
    "parse_duration",
    "parse_feedback",
]

MAX_NOTE_CHARS = 1000
MAX_ID_CHARS = 200
MAX_SUPPRESS_S = 366 * 86400  # a silence longer than a year is a rule to change, not a label
UNKNOWN_MODEL_VERSION = "unknown"  # what feedback is counted under when no model version is known
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class FeedbackError(ValueError):
    """A feedback message or argument that cannot be used (the text says why, in one line)."""


class FeedbackLabel(StrEnum):
    """An analyst's verdict on an episode."""

    CONFIRMED = "confirmed"  # a real anomaly: left out of training, counts as a true positive
    FALSE_POSITIVE = "false_positive"  # normal after all: kept in training, may suppress the item


class FeedbackMessage(BaseModel):
    """One label on ``feedback_topic`` (key: the episode id, UTF-8)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=1, ge=1)
    episode_id: str = Field(
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="The episode labelled; in alert_mode=every-update, the anomaly event's `anomaly_id`.",
    )
    label: FeedbackLabel
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)
    who: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="`user@host` of the analyst.")
    when: datetime = Field(
        ge=datetime(2000, 1, 1, tzinfo=UTC),
        le=datetime(9000, 1, 1, tzinfo=UTC),
        description="When the label was given (UTC, ISO 8601).",
    )
    suppress_for_s: float = Field(
        default=0,
        ge=0,
        le=MAX_SUPPRESS_S,
        description="false_positive only: suppress the item (and reason) this long, at most 366 days; 0 = no.",
    )
    model_version: str | None = Field(
        default=None, max_length=MAX_ID_CHARS, description="The model that raised it, when the analyst knows."
    )
    item_id: str | None = Field(default=None, max_length=MAX_ID_CHARS, description="The item, when known.")
    reason: str | None = Field(
        default=None,
        max_length=MAX_NOTE_CHARS,
        description="The reason (or rule) a suppression is limited to; absent = any reason of the item.",
    )


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d``, ``2w`` -> seconds (FeedbackError otherwise)."""
    match = _DURATION.match(text)
    if match is None and _DURATION.match(text.strip().removeprefix("-")):
        raise FeedbackError(f"the duration {text!r} must not be negative (like 90s, 15m, 1h, 7d, 2w)")
    if match is None:
        raise FeedbackError(f"cannot read the duration {text!r} (like 90s, 15m, 1h, 7d, 2w)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def build_feedback(
    episode_id: str,
    label: FeedbackLabel | str,
    *,
    who: str,
    note: str | None = None,
    suppress_for_s: float = 0,
    model_version: str | None = None,
    item_id: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The message as a JSON-ready dict (optional fields only when given); FeedbackError when invalid."""
    message: dict[str, Any] = {
        "schema_version": 1,
        "episode_id": episode_id,
        "label": str(label),
        "who": who,
        "when": (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds"),
        "suppress_for_s": suppress_for_s,
    }
    optional = {"note": note, "model_version": model_version, "item_id": item_id, "reason": reason}
    message |= {k: v for k, v in optional.items() if v is not None}
    if suppress_for_s and str(label) != FeedbackLabel.FALSE_POSITIVE:
        raise FeedbackError("--suppress-for applies to false_positive labels only")
    _validated(message)
    return message


def parse_feedback(value: bytes | None) -> FeedbackMessage:
    """A message read from the topic; FeedbackError (one line) for anything that is not one."""
    try:
        obj = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise FeedbackError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise FeedbackError(f"JSON {type(obj).__name__}, not an object")
    return _validated(obj)


def _validated(obj: dict[str, Any]) -> FeedbackMessage:
    try:
        return FeedbackMessage.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise FeedbackError(f"{where}: {first['msg']}") from None
