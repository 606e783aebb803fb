"""Records whose outputs the broker refuses: reduce them, and park them if even that fails.

A dead letter carries the original value; a record the broker took compressed (a 5 MB gzip
value) comes back as a dead letter too large to produce uncompressed. Rewinding and producing it
again would fail forever and hold every later record (and, in exactly-once, every transaction)
behind it. So when a delivery fails, :meth:`PoisonRecords.note` remembers the input records whose
outputs were refused as such (too large, invalid); on the next attempt :meth:`PoisonRecords.apply`
replaces such a dead letter by a reduced one (headers and a bounded prefix of the value, marked
``dlq.truncated``), and after ``max_attempts`` refusals drops the record's outputs: the record is
*parked* — an ERROR log with its topic/partition/offset, ``stockwatch_parked_records_total`` — and
its offset is committed past. Transient failures (a broker outage) are not counted here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from consumer.ports import OutputFailure, OutputRecord, TopicPart
from consumer.wire.dlq import (
    DLQ_HEADER_ORIGINAL_SIZE,
    DLQ_HEADER_SOURCE_OFFSET,
    DLQ_HEADER_SOURCE_PARTITION,
    DLQ_HEADER_SOURCE_TOPIC,
    DLQ_HEADER_TRUNCATED,
    is_own_header,
)

__all__ = [
    "DLQ_HEADER_ORIGINAL_SIZE",
    "DLQ_HEADER_TRUNCATED",
    "MAX_RECORD_ATTEMPTS",
    "Parked",
    "PoisonRecords",
    "reduce_dead_letter",
    "source_of",
]

log = logging.getLogger(__name__)

MAX_RECORD_ATTEMPTS = (
    3  # refused deliveries of a record's outputs (the full one, then reduced) before parking
)
REDUCED_VALUE_BYTES = 64 * 1024
REDUCED_KEY_BYTES = 1024
REDUCED_HEADERS_BYTES = 16 * 1024  # the dlq.* headers always stay; original headers while they fit

Source = tuple[str, int, int]  # (topic, partition, offset) of an input record


def source_of(output: OutputRecord) -> Source | None:
    """The input record an output was made from: a dead letter's dlq.source.* headers, an event's ``source``."""
    headers = dict(output.headers)
    try:
        if DLQ_HEADER_SOURCE_OFFSET in headers:
            return (
                headers[DLQ_HEADER_SOURCE_TOPIC].decode(),
                int(headers[DLQ_HEADER_SOURCE_PARTITION]),
                int(headers[DLQ_HEADER_SOURCE_OFFSET]),
            )
        source = orjson.loads(output.value or b"")["source"]
        return str(source["topic"]), int(source["partition"]), int(source["offset"])
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
        return None


def reduce_dead_letter(output: OutputRecord) -> OutputRecord | None:
    """A bounded copy of a dead letter (None for any other output): the dlq.* headers and what was
    truncated first (as in every dead letter), then the original headers while they fit, and a
    prefix of the key and value."""
    headers = output.headers
    if not any(k == DLQ_HEADER_SOURCE_OFFSET for k, _ in headers):
        return None
    value, key = output.value or b"", output.key
    cut = []
    if len(value) > REDUCED_VALUE_BYTES:
        cut.append("value")
    if key is not None and len(key) > REDUCED_KEY_BYTES:
        cut.append("key")
        key = key[:REDUCED_KEY_BYTES]
    kept = [(k, v) for k, v in headers if is_own_header(k)]
    room = REDUCED_HEADERS_BYTES - sum(len(k) + len(v) for k, v in kept)
    original = []
    for k, v in headers:
        if not is_own_header(k):
            room -= len(k) + len(v)
            if room < 0:
                cut.append("headers")
                break
            original.append((k, v))
    marks = [
        (DLQ_HEADER_TRUNCATED, ",".join(cut).encode()),
        (DLQ_HEADER_ORIGINAL_SIZE, str(len(value)).encode()),
    ]
    return OutputRecord(output.topic, key, value[:REDUCED_VALUE_BYTES], kept + marks + original)


@dataclass(frozen=True, slots=True)
class Parked:
    """An input record whose outputs were dropped after ``MAX_RECORD_ATTEMPTS`` refusals."""

    source: Source
    kind: str  # why its outputs were refused: "too_large" / "invalid"
    error: str


@dataclass(slots=True)
class _Refusals:
    count: int = 0
    kind: str = ""
    error: str = ""
    parked: bool = False


@dataclass
class PoisonRecords:
    """Input records whose outputs were refused, per source record, until their batch settles."""

    max_attempts: int = MAX_RECORD_ATTEMPTS
    _refused: dict[Source, _Refusals] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._refused)

    def note(self, outputs: Sequence[OutputRecord], failures: Iterable[OutputFailure]) -> bool:
        """Remember the records whose outputs were refused; True when there was one (retry at once)."""
        refused = False
        for failure in failures:
            if failure.kind == "transient" or not 0 <= failure.index < len(outputs):
                continue
            source = source_of(outputs[failure.index])
            if source is None:
                log.error(
                    "output to %s refused (%s) and not traceable to its input",
                    outputs[failure.index].topic,
                    failure.error,
                )
                continue
            entry = self._refused.setdefault(source, _Refusals())
            entry.count, entry.kind, entry.error = entry.count + 1, failure.kind, failure.error
            refused = True
            log.warning(
                "output of %s[%d]@%d refused (%s, %d/%d): %s",
                *source,
                failure.kind,
                entry.count,
                self.max_attempts,
                failure.error,
                extra={"topic": source[0], "partition": source[1], "offset": source[2]},
            )
        return refused

    def apply(self, outputs: list[OutputRecord]) -> tuple[list[OutputRecord], list[Parked]]:
        """The outputs to publish on this attempt, and the records parked now (logged at ERROR, once)."""
        if not self._refused:
            return outputs, []
        out: list[OutputRecord] = []
        parked: list[Parked] = []
        for output in outputs:
            source = source_of(output)
            entry = self._refused.get(source) if source is not None else None
            if entry is None:
                out.append(output)
                continue
            reduced = reduce_dead_letter(output) if entry.count < self.max_attempts else None
            if reduced is not None:
                out.append(reduced)
            elif not entry.parked:
                assert source is not None
                entry.parked = True
                parked.append(Parked(source, entry.kind, entry.error))
                log.error(
                    "parked %s[%d]@%d: its outputs were refused %d times (%s: %s); it is skipped and "
                    "its offset committed past",
                    *source,
                    entry.count,
                    entry.kind,
                    entry.error,
                    extra={"topic": source[0], "partition": source[1], "offset": source[2]},
                )
        return out, parked

    def settled(self, after: Mapping[TopicPart, int]) -> None:
        """A batch ending before ``after`` (per partition) was delivered: forget its records."""
        if self._refused:
            self._refused = {
                s: e for s, e in self._refused.items() if s[2] >= after.get((s[0], s[1]), s[2] + 1)
            }

    def forget(self, partitions: Iterable[TopicPart]) -> None:
        """Partitions revoked: their records are another member's business now."""
        gone = set(partitions)
        if self._refused and gone:
            self._refused = {s: e for s, e in self._refused.items() if (s[0], s[1]) not in gone}
