"""What travels with an anomaly event besides the decision: input fields, input headers, model links.

Called for the rows that become anomaly events only (never per update), by both scoring paths and
``stockwatch score``:

* :meth:`EventContext.attributes` — the input fields the detector does not read, for
  ``item.attributes``, bounded by a field count and the bytes of their JSON; fields over a bound
  are left out (in input order: a huge field does not hide the small ones after it) and
  ``item.attributes_truncated`` says so. The event never grows past the bound, so big attributes
  never turn an anomaly into a dead letter; fields a document store cannot hold (``$``-prefixed or
  dotted keys, NULs, integers beyond 64 bits, arrays in arrays, at any depth) and fields nested
  deeper than MAX_ATTRIBUTE_DEPTH are left out too, so the event always serialises and the optional
  Mongo audit and downstream stores always take it.
* :meth:`EventContext.headers` — the input record headers named in ``propagate_headers``
  (W3C ``traceparent`` and friends), for the anomaly event's Kafka record (OpenTelemetry carries
  trace context in headers, not in payloads); a value over ``propagate_header_max_bytes`` is dropped.
* :class:`ModelLinks` — ``links.model`` (the version's directory in the model store) and
  ``links.report`` (its ``report.png``, written by the retrain worker, when it exists), as
  ``file://`` URIs or through ``report_url_template``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

import orjson

from consumer.wire.events import UNVERSIONED
from detection.items import ITEM_INPUT_KEYS

__all__ = [
    "MANIFEST_FILE",
    "REPORT_FILE",
    "SEED_INPUT_KEYS",
    "EventContext",
    "ModelLinks",
    "change_input_keys",
    "item_attributes",
    "propagated_headers",
    "storable",
]

REPORT_FILE: Final = "report.png"  # the retrain worker's report in each version directory
MANIFEST_FILE: Final = "manifest.json"  # in every published version directory (detection.store)
SEED_INPUT_KEYS: Final = frozenset((*ITEM_INPUT_KEYS, "event_id"))  # what detection.parse_item reads
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
RECHECK_S: Final = 5.0  # a missing report is looked for again after this long (rendered after publish)
_NO_LINKS: Final[dict[str, str | None]] = {"model": None, "report": None}


@cache
def change_input_keys(group_field: str) -> frozenset[str]:
    """What ``detection.parse_updates`` reads: the item's keys, ``occurred_at`` and the peer group
    (``""``: none)."""
    return SEED_INPUT_KEYS | ({"occurred_at", group_field} - {""})


def item_attributes(
    obj: Mapping[str, Any], used: frozenset[str], *, max_fields: int, max_bytes: int
) -> tuple[dict[str, Any], bool]:
    """The fields of ``obj`` not in ``used`` within the bounds, and whether any was left out.

    A field is also left out when a document store could not hold it (:func:`storable`) or orjson
    cannot write it back (nested deeper than it writes): the event must always serialise and audit.
    """
    extra = {k: v for k, v in obj.items() if k not in used}
    if not extra:
        return extra, False
    try:
        if len(extra) <= max_fields and len(orjson.dumps(extra)) <= max_bytes and storable(extra):
            return extra, False  # the usual case: one serialisation, one walk
    except orjson.JSONEncodeError:
        pass
    kept: dict[str, Any] = {}
    size = 2  # {}
    for key, value in extra.items():
        if len(kept) == max_fields:
            break
        try:
            # "key":value plus a comma: exact for orjson's compact output
            cost = len(orjson.dumps(key)) + 1 + len(orjson.dumps(value)) + (1 if kept else 0)
        except orjson.JSONEncodeError:
            continue
        if size + cost <= max_bytes and _safe_key(key) and storable(value, 1):
            kept[key] = value
            size += cost
    return kept, True


MAX_ATTRIBUTE_DEPTH = 32  # the event nests attributes 3 levels down; orjson writes at most 255


def storable(value: Any, depth: int = 0, *, in_list: bool = False) -> bool:
    """JSON a document store holds as is, within the depth an event can carry: no key that starts
    with ``$`` or holds a dot or a NUL (MongoDB and FerretDB refuse them, BSON cannot encode a NUL),
    no integer beyond 64-bit signed, no array directly in an array (FerretDB refuses those), and
    at most MAX_ATTRIBUTE_DEPTH levels of nesting (the recursion is bounded by it).
    """
    kind = type(value)
    if kind is str or kind is float or kind is bool or value is None:
        return True
    if kind is int:
        return bool(_INT64_MIN <= value <= _INT64_MAX)
    if depth >= MAX_ATTRIBUTE_DEPTH:
        return False
    if kind is dict:
        return all(_safe_key(k) and storable(v, depth + 1) for k, v in value.items())
    if kind is list:
        return not in_list and all(storable(v, depth + 1, in_list=True) for v in value)
    return False  # not a JSON value (a Mongo type in a test): never guess


def _safe_key(key: Any) -> bool:
    return type(key) is str and not key.startswith("$") and "." not in key and "\x00" not in key


def propagated_headers(
    headers: Iterable[tuple[str, bytes | None]] | None, names: Sequence[str], *, max_bytes: int
) -> list[tuple[str, bytes]]:
    """The headers named in ``names`` (lower case; matched case-insensitively), the last of each
    name (Kafka's ``lastHeader``), in ``names`` order; values over ``max_bytes`` are dropped."""
    if not headers or not names:
        return []
    found: dict[str, tuple[str, bytes]] = {}
    for key, value in headers:
        name = key.lower()
        if name in names and value is not None and len(value) <= max_bytes:
            found[name] = (key, bytes(value))
        elif name in found:  # a later, unusable value of the same name: the last one wins
            del found[name]
    return [found[name] for name in names if name in found]


@dataclass(slots=True)
class ModelLinks:
    """``links`` of a model version's events: its directory and its report, cached per version.

    ``model`` is null unless the version is published in ``model_dir`` (its manifest is there). A
    report is rendered after its version is published, so a missing one is looked for again every
    :data:`RECHECK_S`; two ``stat`` calls per batch with anomalies at most.
    """

    model_dir: Path | None
    report_url_template: str | None = None
    exists: Callable[[Path], bool] = Path.is_file
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, tuple[dict[str, str | None], float]] = field(default_factory=dict, repr=False)

    def __call__(self, version: str) -> dict[str, str | None]:
        if self.model_dir is None or version == UNVERSIONED or "/" in version or version.startswith("."):
            return dict(_NO_LINKS)
        hit = self._cache.get(version)
        now = self.clock()
        if hit is not None and (hit[0]["report"] is not None or now - hit[1] < RECHECK_S):
            return dict(hit[0])
        directory = self.model_dir.resolve() / version
        links = dict(_NO_LINKS)
        if self.exists(directory / MANIFEST_FILE):  # a published version (not a model built in process)
            links["model"] = directory.as_uri() + "/"
        if links["model"] and self.exists(directory / REPORT_FILE):
            template = self.report_url_template
            links["report"] = (
                template.replace("{version}", version) if template else (directory / REPORT_FILE).as_uri()
            )
        if len(self._cache) > 64:  # versions come and go; keep the recent ones
            self._cache.clear()
        self._cache[version] = (links, now)
        return dict(links)


@dataclass(frozen=True, slots=True)
class EventContext:
    """The bounds and names of what travels with anomaly events (``settings.context`` + model dir)."""

    header_names: tuple[str, ...] = ("traceparent", "trace-id", "correlation-id")
    header_max_bytes: int = 1024
    max_fields: int = 32
    max_bytes: int = 4096
    links: ModelLinks = field(default_factory=lambda: ModelLinks(None))

    @classmethod
    def from_settings(cls, context: Any, model_dir: Path | None) -> EventContext:
        """From ``settings.context`` (config.context.ContextSettings) and ``settings.models.dir``."""
        return cls(
            header_names=context.header_names,
            header_max_bytes=context.propagate_header_max_bytes,
            max_fields=context.attributes_max_fields,
            max_bytes=context.attributes_max_bytes,
            links=ModelLinks(model_dir, context.report_url_template),
        )

    def attributes(self, obj: Mapping[str, Any], used: frozenset[str]) -> dict[str, Any]:
        """``item.attributes`` and ``item.attributes_truncated`` of the input object ``obj``."""
        if used.issuperset(obj):  # the usual: nothing but what the detector reads (one C-level pass)
            return {"attributes": {}, "attributes_truncated": False}
        if not self.max_fields:
            return {"attributes": {}, "attributes_truncated": any(k not in used for k in obj)}
        kept, cut = item_attributes(obj, used, max_fields=self.max_fields, max_bytes=self.max_bytes)
        return {"attributes": kept, "attributes_truncated": cut}

    def headers(self, headers: Iterable[tuple[str, bytes | None]] | None) -> list[tuple[str, bytes]]:
        """The propagated headers of an input record, for its anomaly event's record."""
        return propagated_headers(headers, self.header_names, max_bytes=self.header_max_bytes)
