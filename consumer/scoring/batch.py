"""One poll batch, pure: raw records -> valid items / dead letters -> decisions -> output records.

Nothing here talks to Kafka or Mongo, so every rule is unit-testable: :func:`validate_records`
sorts records into items and dead letters, :func:`decide_batch` scores the valid items in ONE
vectorised ``model.decide`` call and builds the output records. The hot path builds dicts
(:func:`consumer.wire.events.build_events`, shared with ``scan`` and ``score``) and serialises them with orjson (no pydantic object per message); only anomalies (a few percent)
and, when ``decisions_topic`` is set, compact decision events are produced.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, Final, Protocol

import numpy as np
import orjson

from consumer.ports import OutputRecord, SourceRecord, UnreadBatch
from consumer.scoring.columns import ItemColumns
from consumer.scoring.state.store import StagedChanges
from consumer.wire.context import SEED_INPUT_KEYS, EventContext
from consumer.wire.dlq import dead_lettered_at
from consumer.wire.events import UNVERSIONED, DecisionsLike, DlqReason, build_events, dlq_headers

log = logging.getLogger(__name__)

__all__ = [
    "UNVERSIONED",
    "BatchConfig",
    "BatchResult",
    "DecisionsLike",
    "Failure",
    "OutputRecord",
    "ScoringModel",
    "SourceRecord",
    "ValidatedBatch",
    "dead_letters",
    "decide_batch",
    "decode_records",
    "process_batch",
    "validate_records",
]


class ScoringModel(Protocol):
    """The part of ``detection.AnomalyModel`` the consumer uses."""

    @property
    def version(self) -> str | None: ...
    @property
    def threshold(self) -> float: ...
    def decide_features(self, features: np.ndarray[Any, Any]) -> DecisionsLike: ...


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """The settings a batch needs (taken from ``Settings`` at the entry point)."""

    anomaly_topic: str
    dlq_topic: str
    decisions_topic: str | None = None
    max_message_bytes: int = 1_048_576
    service: str = "stockwatch-consume"  # the dlq.service header of its dead letters
    group_id: str = ""  # the dlq.group header: the consumer group that read the records
    context: EventContext = field(default_factory=EventContext)  # attributes, headers, links of anomalies
    future_skew_s: float = 3_600.0  # `default` detector: how far ahead of now an occurred_at may be


@dataclass(slots=True)
class ValidatedBatch:
    """Valid items (column-wise) with their source records, and the dead letters of the rest."""

    columns: ItemColumns = field(default_factory=ItemColumns)
    sources: list[SourceRecord] = field(default_factory=list)
    objects: Sequence[dict[str, Any]] = ()  # the decoded input of each valid item (its attributes)
    dead_letters: list[OutputRecord] = field(default_factory=list)
    dlq_reasons: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class BatchResult:
    """Everything the loop must publish for one batch, plus counts for metrics."""

    outputs: list[OutputRecord]
    n_in: int
    n_valid: int
    n_anomalies: int
    dlq_reasons: Counter[str]
    anomalies: list[dict[str, Any]]  # the anomaly event dicts (for the optional Mongo audit)
    model_version: str
    state: StagedChanges | None = None  # `default` detector: the item states this batch changes
    state_token: int = 0  # set when the state changes are applied (StateStore.apply)
    suppressed: int = 0  # episodes opened silently: a suppression matched (alert_mode "episodes")


def _reject(
    record: SourceRecord, reason: DlqReason, error: str, config: BatchConfig, at: str
) -> OutputRecord:
    value = record.value
    if value is None and record.key is None:
        value = b""  # a record needs a key or a value; an empty value stands for the keyless tombstone
    headers = dlq_headers(
        reason,
        error,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=record.timestamp,
        service=config.service,
        group=config.group_id,
        at=at,
        original=record.headers or (),
        first_offset=record.first_offset if isinstance(record, UnreadBatch) else None,
    )
    return OutputRecord(config.dlq_topic, record.key, value, headers)


def validate_records(records: Sequence[SourceRecord], config: BatchConfig) -> ValidatedBatch:
    """Decode and validate a batch; invalid records become dead letters (never dropped), in order.

    A batch of plain records (values within ``max_message_bytes``, all JSON objects) is decoded
    with one C-level ``map``; any other batch record by record. The objects are then validated
    together by :meth:`ItemColumns.from_objects`.
    """
    out = ValidatedBatch()
    objs, candidates, failures = decode_records(records, config)
    columns, index, rejects = ItemColumns.from_objects(objs)
    out.columns = columns
    whole = len(index) == len(candidates)
    out.sources = list(candidates) if whole else [candidates[i] for i in index]
    out.objects = objs if whole else [objs[i] for i in index]
    failures += [(i, 1, candidates[i], DlqReason.INVALID_ITEM, reason) for i, reason in rejects]
    dead_letters(failures, config, out.dead_letters, out.dlq_reasons)
    return out


def decode_records(
    records: Sequence[SourceRecord], config: BatchConfig
) -> tuple[list[dict[str, Any]], Sequence[SourceRecord], list[Failure]]:
    """The JSON objects of a batch, their records, and the records that fail decoding."""
    objs = _decode_plain(records, config.max_message_bytes)
    if objs is not None:
        return objs, records, []
    return _decode(records, config)


def dead_letters(
    failures: list[Failure], config: BatchConfig, outputs: list[OutputRecord], reasons: Counter[str]
) -> None:
    """Append the dead letters of ``failures`` to ``outputs`` in arrival order (a decode failure
    sorts before the candidate that followed it), counting and logging each."""
    failures.sort(key=lambda f: (f[0], f[1]))
    at = dead_lettered_at() if failures else ""
    for _, _, record, reason, error in failures:
        outputs.append(_reject(record, reason, error, config, at))
        reasons[reason.value] += 1
        log.warning(
            "dead letter %s[%d]@%d (%s): %s",
            record.topic,
            record.partition,
            record.offset,
            reason.value,
            error,
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
        )


_DICT_TYPE: Final = frozenset((dict,))
_VALUE: Final = attrgetter("value")
Failure = tuple[int, int, SourceRecord, DlqReason, str]  # (candidates before it, 0|1, record, reason, error)


def plain_values(records: Sequence[SourceRecord], max_bytes: int) -> list[Any] | None:
    """The records' values when every one is non-empty and within ``max_bytes`` (the batch fast paths'
    precondition: no record of it is a dead letter for its size or emptiness)."""
    values: list[Any] = list(map(_VALUE, records))
    if not values or None in values or not min(map(len, values)) > 0 or max(map(len, values)) > max_bytes:
        return None
    return values


def _decode_plain(records: Sequence[SourceRecord], max_bytes: int) -> list[dict[str, Any]] | None:
    """The decoded objects when every value is non-empty, within ``max_bytes`` and a JSON object."""
    values = plain_values(records, max_bytes)
    if values is None:
        return None
    try:
        objs: list[Any] = list(map(orjson.loads, values))
    except orjson.JSONDecodeError:
        return None
    return objs if set(map(type, objs)) == _DICT_TYPE else None


def _decode(
    records: Sequence[SourceRecord], config: BatchConfig
) -> tuple[list[dict[str, Any]], list[SourceRecord], list[Failure]]:
    """Record by record: the decoded objects, their records, and the records that fail decoding."""
    objs: list[dict[str, Any]] = []
    candidates: list[SourceRecord] = []
    failures: list[Failure] = []
    loads = orjson.loads
    for record in records:
        value = record.value
        if value is not None and len(value) > config.max_message_bytes:
            error = f"value is {len(value)} bytes, over max_message_bytes={config.max_message_bytes}"
            reason = DlqReason.OVERSIZE
        elif isinstance(record, UnreadBatch):  # the source skipped a batch unread (value None)
            error, reason = record.error, DlqReason(record.reason)
        elif not value:
            error, reason = "empty or null value", DlqReason.EMPTY
        else:
            try:
                obj = loads(value)
            except orjson.JSONDecodeError as exc:
                error, reason = f"not JSON: {exc}", DlqReason.INVALID_JSON
            else:
                if type(obj) is dict:
                    objs.append(obj)
                    candidates.append(record)
                    continue
                error, reason = f"JSON {type(obj).__name__}, not an object", DlqReason.NOT_AN_OBJECT
        failures.append((len(objs), 0, record, reason, error))
    return objs, candidates, failures


def decide_batch(
    batch: ValidatedBatch, model: ScoringModel, config: BatchConfig, *, now: datetime
) -> BatchResult:
    """Score the valid items in one call and build anomaly (and decision) records."""
    outputs = list(batch.dead_letters)
    anomalies: list[dict[str, Any]] = []
    version = model.version or UNVERSIONED
    columns = batch.columns
    n = len(columns)
    if n:
        decisions = model.decide_features(columns.features())
        flags = decisions.is_anomaly
        # Only the rows that become events are converted to Python objects, in one go each.
        rows = np.arange(n) if config.decisions_topic else np.flatnonzero(flags)
        if len(rows):
            _build_events(
                batch,
                decisions,
                rows,
                version=version,
                threshold=float(model.threshold),
                config=config,
                now=now,
                outputs=outputs,
                anomalies=anomalies,
            )
    return BatchResult(
        outputs=outputs,
        n_in=n + len(batch.dead_letters),
        n_valid=n,
        n_anomalies=len(anomalies),
        dlq_reasons=batch.dlq_reasons,
        anomalies=anomalies,
        model_version=version,
    )


def _build_events(
    batch: ValidatedBatch,
    decisions: DecisionsLike,
    rows: np.ndarray[Any, Any],
    *,
    version: str,
    threshold: float,
    config: BatchConfig,
    now: datetime,
    outputs: list[OutputRecord],
    anomalies: list[dict[str, Any]],
) -> None:
    """Decision events (when ``decisions_topic`` is set) and anomaly events for ``rows``."""
    columns, sources, objects, context = batch.columns, batch.sources, batch.objects, config.context
    dumps = orjson.dumps
    decisions_topic, anomaly_topic = config.decisions_topic, config.anomaly_topic
    events = build_events(
        decisions,
        rows,
        item_ids=columns.item_ids,
        event_ids=columns.event_ids,
        sources=sources,
        item=columns.item,
        version=version,
        threshold=threshold,
        now=now,
        attributes=(lambda i: context.attributes(objects[i], SEED_INPUT_KEYS)) if objects else None,
        links=context.links(version),
    )
    for i, event, anomaly in events:
        key = event["item_id"].encode()
        if decisions_topic:
            outputs.append(OutputRecord(decisions_topic, key, dumps(event)))
        if anomaly is not None:
            anomalies.append(anomaly)
            headers = context.headers(sources[i].headers)
            outputs.append(OutputRecord(anomaly_topic, key, dumps(anomaly), headers))


def process_batch(
    records: Sequence[SourceRecord], model: ScoringModel, config: BatchConfig, *, now: datetime
) -> BatchResult:
    """validate_records + decide_batch: the whole pure part of one poll batch."""
    return decide_batch(validate_records(records, config), model, config, now=now)
