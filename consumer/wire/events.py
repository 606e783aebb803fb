"""The one builder of decision and anomaly events (``consume``, ``scan``, ``score``) — pure, no I/O.

:func:`build_events` turns one vectorised ``decide`` result into plain dicts of the documented
shape (:mod:`consumer.wire.schemas` holds the pydantic models and renders ``docs/schemas``). The
consume hot path calls it for the flagged rows only and serialises with orjson: no pydantic object
per message, and the per-batch arrays are converted with one ``.tolist()`` each. The ``default``
detector's consume path builds the same events in one pass (:mod:`consumer.scoring.change_events`,
tested byte for byte against this builder).

``anomaly_id`` is a pure function of where the input was read and the model version, so a
redelivered input scored by the same model yields the same id (consumers deduplicate on it):

* Kafka records: :func:`anomaly_id` of topic, partition, offset, model version;
* ``score``'s lines: the same, plus the line's ``content``: :func:`input_digest` of the input's bytes
  up to and including the line, so two different inputs (two runs read from stdin) never share an
  id while the same input always gets the same ones;
* ``scan`` (rows of a Mongo collection, whose order shifts between scans): :func:`item_anomaly_id`
  of the source name ``mongo:<db>.<collection>``, the item id and the model version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple, Protocol, TypeGuard, runtime_checkable

import numpy as np

from consumer.wire.dlq import (
    DLQ_HEADER_ERROR,
    DLQ_HEADER_REASON,
    DLQ_HEADER_SOURCE_OFFSET,
    DLQ_HEADER_SOURCE_PARTITION,
    DLQ_HEADER_SOURCE_TIMESTAMP,
    DLQ_HEADER_SOURCE_TOPIC,
    DlqReason,
    dlq_headers,
)
from detection import FEATURE_NAMES

__all__ = [
    "DLQ_HEADER_ERROR",
    "DLQ_HEADER_REASON",
    "DLQ_HEADER_SOURCE_OFFSET",
    "DLQ_HEADER_SOURCE_PARTITION",
    "DLQ_HEADER_SOURCE_TIMESTAMP",
    "DLQ_HEADER_SOURCE_TOPIC",
    "EVENT_SCHEMA_VERSION",
    "STDIN_SOURCE",
    "UNVERSIONED",
    "ChangeDecisionsLike",
    "Coordinates",
    "DecisionsLike",
    "DlqReason",
    "IdBy",
    "SourceLike",
    "anomaly_id",
    "anomaly_ids",
    "build_events",
    "detected_at",
    "dlq_headers",
    "input_digest",
    "item_anomaly_id",
]

EVENT_SCHEMA_VERSION: Final = 1
UNVERSIONED: Final = "unversioned"  # a model that was never published (tests, ad hoc scoring)
ANOMALY_ID_HEX_CHARS: Final = 32
STDIN_SOURCE: Final = "stdin"  # the source topic of `score` lines read from stdin


class DecisionsLike(Protocol):
    """The part of ``detection.Decisions`` the builder uses."""

    @property
    def scores(self) -> np.ndarray[Any, Any]: ...
    @property
    def is_anomaly(self) -> np.ndarray[Any, Any]: ...
    @property
    def features(self) -> np.ndarray[Any, Any]: ...
    def severity(self, i: int) -> Any: ...
    def reasons(self, i: int) -> Sequence[str]: ...


@runtime_checkable
class ChangeDecisionsLike(Protocol):
    """What the ``default`` detector's decisions (``detection.ChangeDecisions``) add."""

    @property
    def severity_score(self) -> np.ndarray[Any, Any]: ...
    def level(self, i: int) -> str: ...
    def kind(self, i: int) -> str: ...
    def rules_fired(self, i: int) -> Sequence[str]: ...


_CHANGE_MEMBERS: Final = ("severity_score", "level", "kind", "rules_fired")


class SourceLike(Protocol):
    """Where an input was read (a consumed Kafka record, or :class:`Coordinates`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int | None: ...


class Coordinates(NamedTuple):
    """Source coordinates of an input that did not come from Kafka (a file line, a Mongo row)."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None = None
    content: str | None = None  # a file line's input_digest: part of its anomaly_id, not of `source`


class IdBy(StrEnum):
    """What an event's ``anomaly_id`` is derived from (besides the model version)."""

    SOURCE = "source"  # topic, partition, offset: consume, score
    ITEM = "item"  # source topic and item id: scan


def anomaly_id(
    topic: str, partition: int, offset: int, model_version: str, content: str | None = None
) -> str:
    """Deterministic id of the decision on one input record by one model version (hex).

    ``content``: a ``score`` line's :func:`input_digest` (a fifth field: a Kafka record's offset
    already names one record, a line number names one only within one input).
    """
    tail = "" if content is None else f"\x1f{content}"
    raw = f"{topic}\x1f{partition}\x1f{offset}\x1f{model_version}{tail}".encode()
    return hashlib.sha256(raw).hexdigest()[:ANOMALY_ID_HEX_CHARS]


def anomaly_ids(sources: Iterable[SourceLike], model_version: str) -> list[str]:
    """:func:`anomaly_id` of each of ``sources`` (no ``content``): one comprehension, no call per id."""
    sha, tail = hashlib.sha256, f"\x1f{model_version}"
    return [sha(f"{s.topic}\x1f{s.partition}\x1f{s.offset}{tail}".encode()).hexdigest()[:ANOMALY_ID_HEX_CHARS]
            for s in sources]  # fmt: skip


def input_digest(running: Any) -> str:
    """The hex digest of a running ``hashlib.sha256`` fed every byte of the input read so far."""
    return str(running.copy().hexdigest()[:ANOMALY_ID_HEX_CHARS])


def item_anomaly_id(source: str, item_id: str, model_version: str) -> str:
    """Deterministic id of the decision on one item of a collection by one model version (hex).

    Three fields where :func:`anomaly_id` hashes four, and ``source`` is ``mongo:<db>.<coll>`` (a
    Kafka topic name cannot contain ``:``), so the two never produce the same preimage.
    """
    raw = f"{source}\x1f{item_id}\x1f{model_version}".encode()
    return hashlib.sha256(raw).hexdigest()[:ANOMALY_ID_HEX_CHARS]


def detected_at(now: datetime) -> str:
    """The ``detected_at`` text of a batch scored at ``now`` (UTC, ISO 8601 with ``Z``)."""
    return now.isoformat().replace("+00:00", "Z")


def _is_change(decisions: object) -> TypeGuard[ChangeDecisionsLike]:
    """``isinstance(decisions, ChangeDecisionsLike)`` without the runtime protocol machinery (slow)."""
    return all(hasattr(decisions, name) for name in _CHANGE_MEMBERS)


def build_events(
    decisions: DecisionsLike,
    rows: np.ndarray[Any, Any],
    *,
    item_ids: Sequence[str],
    event_ids: Sequence[str | None],
    sources: Sequence[SourceLike],
    item: Callable[[int], dict[str, Any]],
    version: str,
    threshold: float,
    now: datetime,
    id_by: IdBy = IdBy.SOURCE,
    feature_names: Sequence[str] = FEATURE_NAMES,
    attributes: Callable[[int], dict[str, Any]] | None = None,
    links: dict[str, Any] | None = None,
) -> Iterator[tuple[int, dict[str, Any], dict[str, Any] | None]]:
    """``(row, decision event, anomaly event or None)`` for each of ``rows``, in order.

    ``rows`` index the batch (``item_ids``, ``event_ids``, ``sources`` and the ``decisions`` arrays);
    ``item(row)`` is the validated item state, asked for flagged rows only; ``feature_names``
    name the columns of ``decisions.features`` (the seed's 7 by default). The anomaly event is a
    new dict: the decision event's fields, then ``item``, ``severity`` and ``reasons``.

    Decisions of the ``default`` detector (:class:`ChangeDecisionsLike`, ``feature_names`` = the
    change features) add ``severity_score`` (calibrated 0-100) to every event and ``kind`` and
    ``rules`` to anomalies; their ``severity`` is the level of ``severity_score``.
    """
    when = detected_at(now)
    scores = decisions.scores[rows].tolist()
    flags = decisions.is_anomaly[rows].tolist()
    features = decisions.features[rows].tolist()
    change = decisions if _is_change(decisions) else None
    calibrated = change.severity_score[rows].tolist() if change is not None else None
    by_item = id_by is IdBy.ITEM
    for j, i in enumerate(rows.tolist()):
        record = sources[i]
        item_id = item_ids[i]
        topic, partition, offset = record.topic, record.partition, record.offset
        event: dict[str, Any] = {
            "schema_version": EVENT_SCHEMA_VERSION,
            "anomaly_id": (
                item_anomaly_id(topic, item_id, version)
                if by_item
                else anomaly_id(topic, partition, offset, version, getattr(record, "content", None))
            ),
            "item_id": item_id,
            "event_id": event_ids[i],
            "is_anomaly": flags[j],
            "score": scores[j],
            "threshold": threshold,
            "model_version": version,
            "features": dict(zip(feature_names, features[j], strict=True)),
            "source": {
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "timestamp": record.timestamp,
            },
            "detected_at": when,
        }
        if calibrated is not None:
            event["severity_score"] = round(calibrated[j], 3)
        if not flags[j]:
            yield i, event, None
            continue
        state = item(i) if attributes is None else item(i) | attributes(i)
        if change is not None:
            anomaly = event | {
                "item": state,
                "severity": change.level(i),
                "reasons": list(map(str, decisions.reasons(i))),
                "kind": change.kind(i),
                "rules": list(change.rules_fired(i)),
            }
        else:
            anomaly = event | {
                "item": state,
                "severity": decisions.severity(i),
                "reasons": list(map(str, decisions.reasons(i))),
            }
        if links is not None:
            anomaly["links"] = dict(links)
        yield i, event, anomaly
