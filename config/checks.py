"""The rules of the settings: checks of single fields (and their annotated types, at the end) and the
cross-field rules; a conflict names every field involved (for the loader's message)."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

__all__ = [
    "TOPIC_FIELDS",
    "ClientProperties",
    "MongoCollectionName",
    "MongoDbName",
    "OptionalFile",
    "TopicTemplate",
    "changelog_apart",
    "changelog_topic",
    "client_limits",
    "conflict",
    "distinct_topics",
    "lease_limits",
    "mongo_collection_name",
    "mongo_db_name",
    "property_values",
    "topic_name",
    "topic_template",
]

TOPIC_FIELDS = (
    "input_topic",
    "anomaly_topic",
    "dlq_topic",
    "decisions_topic",
    "control_topic",
    "status_topic",
    "feedback_topic",
)
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")  # what the broker and both clients accept
_NOT_TOPIC_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_TEMPLATE_FIELDS = frozenset({"group_id", "input_topic"})
_DB_NAME = re.compile(r"[A-Za-z0-9_-]+")  # what both MongoDB and FerretDB accept (FerretDB: only these)
_DB_NAME_BYTES = 63  # MongoDB: "fewer than 64"
_COLLECTION_BYTES = 190  # with the longest database name, within MongoDB's 255-byte namespace


def conflict(message: str, *fields: str) -> PydanticCustomError:
    """A cross-field error; ``fields`` lets the loader say where each involved value came from."""
    return PydanticCustomError("settings_conflict", message, {"fields": " ".join(fields)})


def topic_name(value: str | None, *, may_be_empty: bool = False) -> str | None:
    """``value`` if Kafka accepts it as a topic name (the clients would raise only when first used)."""
    if value is None or (may_be_empty and value == ""):
        return value
    if not _TOPIC_NAME.fullmatch(value) or value in (".", ".."):
        raise ValueError("must be a Kafka topic name: 1 to 249 ASCII letters, digits, '.', '_' or '-'")
    return value


def topic_template(value: str) -> str:
    """``value`` if its only fields are bare ``{group_id}`` and ``{input_topic}`` (no attribute,
    index, conversion or format spec: ``{group_id.__class__}`` would reach into the object) and it
    names a topic once they are replaced."""
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:  # an unmatched brace
        raise ValueError(f"is not a valid template ({exc})") from None
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue  # literal text only (or an escaped brace)
        if field not in _TEMPLATE_FIELDS or spec or conversion is not None:
            shown = _field_text(field, conversion, spec)
            raise ValueError(
                f"{shown} is not allowed: only bare {{group_id}} and {{input_topic}} are replaced"
            )
    if not value.format(group_id="g", input_topic="t").strip():
        raise ValueError("must name a topic")
    return value


def changelog_topic(template: str, *, group_id: str, input_topic: str) -> str:
    """The changelog topic of a group reading ``input_topic`` (characters Kafka refuses become ``_``)."""
    name = template.format(group_id=group_id, input_topic=input_topic)
    return _NOT_TOPIC_CHARS.sub("_", name)[:249]


def changelog_apart(changelog: str, others: Mapping[str, str]) -> None:
    """The state changelog must be a topic of its own: one shared with the input fed the service
    its own state records as updates, without end (or, with an output, mixed them into it)."""
    if changelog in (".", ".."):
        raise conflict(
            f"state_changelog_topic names {changelog!r}, which Kafka refuses as a topic name",
            "state_changelog_topic",
        )
    clash = [name for name, topic in others.items() if topic == changelog]
    if clash:
        raise conflict(
            f"state_changelog_topic names {changelog!r}, which is also {clash[0]}: the state needs a "
            "topic of its own",
            "state_changelog_topic",
            *clash,
        )


def _field_text(field: str, conversion: str | None, spec: str | None) -> str:
    """The replacement field as written (``{group_id!r}``), for the message."""
    return "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"


def mongo_db_name(value: str) -> str:
    """``value`` if MongoDB accepts it as a database name: pymongo checks only some characters and
    the server refuses the rest at the first operation, which then looked like an unavailable Mongo."""
    if not value:
        raise ValueError("must name a database")
    if not _DB_NAME.fullmatch(value):
        bad = "".join(sorted({c for c in value if not _DB_NAME.fullmatch(c)}))
        raise ValueError(f"a MongoDB database name is ASCII letters, digits, '_' and '-' only (not {bad!a})")
    if len(value.encode()) > _DB_NAME_BYTES:
        raise ValueError(f"a MongoDB database name is at most {_DB_NAME_BYTES} bytes long")
    return value


def mongo_collection_name(value: str) -> str:
    """``value`` if MongoDB accepts it as a collection name (refused only at the first operation,
    which then looked like an unavailable Mongo)."""
    if not value:
        raise ValueError("must name a collection")
    if "$" in value or "\x00" in value:
        raise ValueError("a MongoDB collection name cannot contain '$' or NUL")
    if value.startswith("system."):
        raise ValueError("names starting with 'system.' are MongoDB's own collections")
    if len(value.encode()) > _COLLECTION_BYTES:
        raise ValueError(f"a MongoDB collection name is at most {_COLLECTION_BYTES} bytes long")
    return value


def property_values(value: Any) -> Any:
    """One line for a client property whose value is no text, number or boolean (null, a list, an
    object): the union type alone said it four times, once per type it is not."""
    if isinstance(value, Mapping):
        for name, v in value.items():
            if not isinstance(v, str | int | float | bool):
                raise ValueError(
                    f"the value of {name!r} must be text, a number or true/false (got {type(v).__name__})"
                )
    return value


def client_limits(kafka_client: str, max_poll_interval_ms: int, session_timeout_ms: int) -> None:
    """librdkafka refuses a poll interval shorter than the session timeout."""
    if kafka_client == "confluent-kafka" and max_poll_interval_ms < session_timeout_ms:
        raise conflict(
            "kafka_client confluent-kafka needs max_poll_interval_ms >= session_timeout_ms "
            f"(got {max_poll_interval_ms} < {session_timeout_ms})",
            "kafka_client",
            "max_poll_interval_ms",
            "session_timeout_ms",
        )


def lease_limits(lease_ttl_s: float, worker_mongo_timeout_s: float) -> None:
    """A lease renewal that hangs for the Mongo timeout must leave time for a retry before expiry."""
    if lease_ttl_s < 2 * worker_mongo_timeout_s:
        raise conflict(
            f"lease_ttl_s must be at least twice worker_mongo_timeout_s (got {lease_ttl_s:g} < "
            f"2 x {worker_mongo_timeout_s:g}): one slow renewal would let the lease lapse mid-retrain",
            "lease_ttl_s",
            "worker_mongo_timeout_s",
        )


def distinct_topics(input_topic: str, outputs: Mapping[str, str]) -> None:
    """The input topic must be none of the outputs (a loop of its own anomalies)."""
    clash = [name for name, topic in outputs.items() if topic == input_topic]
    if clash:
        raise conflict(
            f"input_topic {input_topic!r} must differ from every output topic", "input_topic", *clash
        )


def _unset_when_empty(value: Any) -> Any:
    return None if value == "" else value  # `VAR=` in an env file means unset, not the directory "."


MongoDbName = Annotated[str, AfterValidator(mongo_db_name)]
MongoCollectionName = Annotated[str, AfterValidator(mongo_collection_name)]
TopicTemplate = Annotated[str, AfterValidator(topic_template)]
OptionalFile = Annotated[Path | None, BeforeValidator(_unset_when_empty)]
ClientProperties = Annotated[dict[str, str | int | float | bool], BeforeValidator(property_values)]
