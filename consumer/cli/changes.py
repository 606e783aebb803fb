"""The ``default`` detector's side of ``stockwatch train`` and ``stockwatch score``.

``score`` with a ``default`` model keeps per-item state as ``consume`` will: the input is processed
in order, each chunk decided against the states left by the previous ones, seeded from
``--baseline`` (a snapshot file: what Mongo holds). Partial updates merge onto the item's last
accepted state; an update of an unknown item lacking a number is rejected as ``missing_field``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import orjson

from consumer.cli.failures import EXIT_USAGE, UserFacingError
from consumer.cli.files import fail, open_in, open_out
from consumer.cli.rejections import RejectedLines, no_valid_line

if TYPE_CHECKING:
    from config import Settings
    from consumer.cli.score_alerts import AlertSink
    from consumer.wire.context import EventContext
    from detection import ChangeDetector, StateTable, UpdateBatch

__all__ = [
    "group_field_of",
    "read_lines",
    "score_changes",
    "score_default",
    "snapshot_of",
    "state_from_baseline",
    "train_default",
]

BASELINE_HINT = (
    "stockwatch: score: hint: updates of items with no known state need all four numbers; "
    "--baseline ITEMS.jsonl seeds item states from a snapshot (e.g. the file train --items was given)"
)


def read_lines(
    source: IO[bytes], digests: dict[int, str] | None = None
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, JSON object) per non-blank line, or (line number, why the line is not one);
    ``digests``: filled with each such line's input_digest (its anomaly_id's ``content``)."""
    from consumer.wire.events import input_digest

    running = hashlib.sha256()
    for lineno, line in enumerate(source, start=1):
        if digests is not None:
            running.update(line)
        if not line.strip():
            continue
        if digests is not None:
            digests[lineno] = input_digest(running)
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield lineno, f"invalid JSON ({exc})"
            continue
        yield lineno, raw if isinstance(raw, dict) else f"expected a JSON object, got {type(raw).__name__}"


def reject(source: IO[bytes], lineno: int, reason: str, counts: dict[str, int]) -> None:
    print(f"stockwatch: {getattr(source, 'name', '-')}: line {lineno}: rejected: {reason}", file=sys.stderr)
    counts["rejected"] += 1


def snapshot_of(source: IO[bytes], counts: dict[str, int], group_field: str = "category") -> UpdateBatch:
    """The valid lines of a snapshot file (one state per item) as an update batch; the rejected ones
    are reported in line order, the first few of them (:class:`RejectedLines`)."""
    from detection import parse_updates

    lines: list[tuple[int, dict[str, Any]]] = []
    rejected: list[tuple[int, str]] = []
    for lineno, doc in read_lines(source):
        if isinstance(doc, str):
            rejected.append((lineno, doc))
        else:
            lines.append((lineno, doc))
    batch, rejects = parse_updates([doc for _, doc in lines], group_field=group_field)
    rejected += [(lines[index][0], reason) for index, reason in rejects]
    report = RejectedLines(getattr(source, "name", "-"))
    for lineno, reason in sorted(rejected):
        report.add(lineno, reason)
    report.finish()
    counts["rejected"] += report.count
    return batch


def state_from_baseline(
    detector: ChangeDetector, source: IO[bytes] | None, *, future_skew_s: float = 3_600.0
) -> StateTable:
    """Item states seeded from a snapshot file; items it lacks must first arrive in full."""
    from consumer.scoring.future_time import untime_future
    from detection import StateTable

    if source is None:
        return StateTable()
    counts = {"rejected": 0}
    snapshot = snapshot_of(source, counts, detector.metadata.group_field)
    if not len(snapshot):  # scoring on as if no --baseline were given would hide the mistake
        raise UserFacingError(no_valid_line("--baseline", getattr(source, "name", "-"), counts["rejected"]),
                              EXIT_USAGE)  # fmt: skip
    snapshot, ahead = untime_future(snapshot, time.time() + future_skew_s)  # as consume's inventory seeds
    table = detector.baseline(snapshot)
    if counts["rejected"]:
        print(f"stockwatch: baseline: {counts['rejected']} lines skipped", file=sys.stderr)
    if ahead:
        print(f"stockwatch: baseline: {ahead} item(s) stamped more than future_skew_s ahead start with "
              "no occurred_at", file=sys.stderr)  # fmt: skip
    _note_unused(snapshot)
    return table


def _note_unused(snapshot: UpdateBatch) -> None:
    """Say which valid baseline lines seed nothing (as consume's inventory seed, the last line of an id wins)."""
    import numpy as np

    numbers = np.stack([snapshot.stock, snapshot.min, snapshot.max, snapshot.price])
    incomplete = int(np.count_nonzero(np.isnan(numbers).any(axis=0)))
    repeated = len(snapshot) - len(set(snapshot.item_ids))
    if incomplete:
        print(f"stockwatch: baseline: {incomplete} line(s) lack one of stock_quantity, min_stock_level, "
              "max_stock_level, price: their items start with no known state", file=sys.stderr)  # fmt: skip
    if repeated:
        print(f"stockwatch: baseline: {repeated} line(s) repeat an item_id: the last line of each item is "
              "its state", file=sys.stderr)  # fmt: skip


def score_changes(
    detector: ChangeDetector,
    table: StateTable,
    lines: list[tuple[int, dict[str, Any] | str]],
    *,
    topic: str,
    source: IO[bytes],
    sink: IO[bytes],
    counts: dict[str, int],
    context: EventContext | None = None,
    alerts: AlertSink | None = None,
    future_skew_s: float = 3_600.0,
    digests: dict[int, str] | None = None,
) -> None:
    """Decide one chunk of :func:`read_lines` in order, report its rejected lines in line order, write
    its events (and alerts), then advance the item states; ``digests``: read_lines' (the chunk's
    lines are taken out of it)."""
    import numpy as np

    from consumer.scoring.future_time import split_future
    from consumer.wire.context import EventContext, change_input_keys
    from consumer.wire.events import UNVERSIONED, Coordinates, build_events
    from detection import CHANGE_FEATURE_NAMES, MissingFieldError, parse_updates

    digests = {} if digests is None else digests
    contents = {lineno: digests.pop(lineno, None) for lineno, _ in lines}  # memory: one chunk's
    chunk = [(lineno, doc) for lineno, doc in lines if not isinstance(doc, str)]
    if not chunk:  # nothing to decide: a chunk of lines that are not JSON objects
        for lineno, reason in lines:
            reject(source, lineno, str(reason), counts)
        return
    group = detector.metadata.group_field
    batch, rejects = parse_updates([doc for _, doc in chunk], group_field=group)
    bad = dict(rejects)
    keep, ahead = split_future(batch, time.time() + future_skew_s)  # as consume: never the item's clock
    if keep is not None:
        good = [k for k in range(len(chunk)) if k not in bad]  # the chunk index of each batch row
        bad.update({good[i]: reason for i, reason in ahead})
        batch = batch.rows(keep)
    linenos = [lineno for k, (lineno, _) in enumerate(chunk) if k not in bad]
    docs = [doc for k, (_, doc) in enumerate(chunk) if k not in bad]
    context, used, version = (
        context or EventContext(),
        change_input_keys(group),
        detector.version or UNVERSIONED,
    )
    decisions, changes = detector.decide_batch(table, batch)
    rejected = {linenos[i]: str(exc) for i, exc in decisions.rejected.items()}
    rejected.update({chunk[k][0]: reason for k, reason in bad.items()})
    rejected.update({lineno: doc for lineno, doc in lines if isinstance(doc, str)})
    counts["unknown_items"] = counts.get("unknown_items", 0) + sum(
        isinstance(exc, MissingFieldError) for exc in decisions.rejected.values()
    )
    for lineno in sorted(rejected):
        reject(source, lineno, rejected[lineno], counts)
    rows = np.array([i for i in range(len(batch)) if i not in decisions.rejected], dtype=np.intp)
    values = decisions.new_values

    def item(i: int) -> dict[str, Any]:
        stock, lo, hi, price = values[i].tolist()
        return {"item_id": batch.item_ids[i], "event_id": batch.event_ids[i], "stock_quantity": stock,
                "min_stock_level": lo, "max_stock_level": hi, "price": price}  # fmt: skip

    def attributes(i: int) -> dict[str, Any]:
        return context.attributes(docs[i], used)

    now, links = datetime.now(UTC), context.links(version)
    sources = [Coordinates(topic, 0, lineno, None, contents[lineno]) for lineno in linenos]
    events = list(build_events(
        decisions, rows, item_ids=batch.item_ids, event_ids=batch.event_ids, sources=sources, item=item,
        version=version, threshold=detector.threshold, now=now, feature_names=CHANGE_FEATURE_NAMES,
        attributes=attributes, links=links,
    ))  # fmt: skip
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    sink.write(b"".join(dumps(anomaly or decision, option=newline) for _, decision, anomaly in events))
    sink.flush()
    if alerts is not None:  # what consume publishes to the anomaly topic (episodes, or every anomaly)
        alerts.write_changes(events, updates=batch, sources=sources, decisions=decisions, now=now,
                             item=lambda i: item(i) | attributes(i), links=links)  # fmt: skip
    changes.apply_to(table)  # only once the chunk's lines are written
    counts["scored"] += len(rows)


def train_default(args: argparse.Namespace, settings: Settings) -> int:
    """``train --detector default``: the change detector from a snapshot file; same summary line."""
    from consumer.cli.forest_flags import forest_params
    from consumer.cli.models import EXIT_OK, EXIT_USAGE, open_store
    from detection import DEFAULT_RULES, TrainingError, train_detector
    from detection.params import shown_params

    chosen = {
        "n_estimators": args.n_estimators,
        "max_samples": args.max_samples,
        "random_state": args.random_state,
    }
    budget = (  # the retrain worker trains with the same setting (consumer/retraining/candidates.py)
        settings.models.alert_budget_per_1000
        if args.alert_budget_per_1000 is None
        else args.alert_budget_per_1000
    )
    counts = {"rejected": 0}
    try:
        for flag, value in (("--contamination", args.contamination), ("--threshold", args.threshold)):
            if value is not None:
                raise ValueError(
                    f"{flag} applies to --detector seed; the default detector has an alert budget"
                )
        check_budget(budget)
        group = group_field_of(args, settings)  # as the retrain worker's (settings peer_group_field)
        params = forest_params(chosen)
        with open_in(str(args.items), "--items") as source:
            snapshot = snapshot_of(source, counts, group)
        if not len(snapshot):
            raise ValueError(no_valid_line("--items", str(args.items), counts["rejected"]))
        started = time.perf_counter()
        rules = settings.models.rule_table()  # bound into the model: score and consume follow it
        model = train_detector(snapshot, params, alert_budget_per_1000=budget,
                               rules=DEFAULT_RULES if rules is None else rules, group_field=group)  # fmt: skip
        seconds = time.perf_counter() - started
    except (TrainingError, ValueError, OSError) as exc:  # ValidationError, RuleError are ValueErrors
        fail(f"train: {exc}")
        return EXIT_USAGE
    store = open_store(args, settings, must_exist=False)
    try:
        version = store.publish(model)
    except OSError as exc:
        fail(f"train: cannot publish to {store.root}: {exc}")
        return EXIT_USAGE
    summary = {
        "version": version, "model_dir": str(store.root), "n_samples": model.metadata.n_samples,
        "rejected_lines": counts["rejected"], "threshold": model.threshold, "offset": model.metadata.offset,
        "anomaly_rate": model.metadata.training_scores.anomaly_rate, "training_seconds": round(seconds, 3),
        "params": shown_params(params, "default"), "detector": "default", "alert_budget_per_1000": budget,
        "group_field": model.metadata.group_field,
    }  # fmt: skip
    sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()
    return EXIT_OK


def check_budget(budget: float) -> None:
    """ValueError unless ``budget`` is a usable ``--alert-budget-per-1000`` (train and eval alike)."""
    if not 0.0 < budget <= 500.0:
        raise ValueError(f"--alert-budget-per-1000 must be in (0, 500], got {budget}")


def group_field_of(args: argparse.Namespace, settings: Settings) -> str:
    """``--group-field``, else the setting ``peer_group_field`` (``""``: no peer grouping);
    ValueError (one line) for a value that cannot be a peer-group field."""
    from config.peer_group import check_group_field

    if args.group_field is None:
        return settings.models.peer_group_field  # checked when the settings were read
    try:
        return check_group_field(args.group_field)
    except ValueError as exc:
        raise ValueError(f"--group-field: {exc}") from None


def score_default(
    model: Any,
    args: argparse.Namespace,
    topic: str,
    counts: dict[str, int],
    context: EventContext,
    *,
    inputs: tuple[IO[bytes], IO[bytes] | None],
    alerts: AlertSink | None = None,
    future_skew_s: float = 3_600.0,
) -> None:
    """Score with per-item state, in order (:mod:`consumer.cli.changes`); ``inputs``: the opened
    ``--input`` and ``--baseline`` (or None); ``alerts``: ``--alerts``."""
    from consumer.chunks import chunked

    source, baseline = inputs
    hinted = False
    digests: dict[int, str] = {}  # read_lines' input_digest per line, taken out chunk by chunk
    with contextlib.ExitStack() as stack:
        table = state_from_baseline(model, baseline, future_skew_s=future_skew_s)
        sink = stack.enter_context(open_out(args.output, "--output"))
        for chunk in chunked(read_lines(source, digests), args.chunk_size):
            score_changes(model, table, chunk, topic=topic, source=source, sink=sink, counts=counts,
                          context=context, alerts=alerts, future_skew_s=future_skew_s,
                          digests=digests)  # fmt: skip
            if baseline is None and counts.get("unknown_items") and not hinted:
                hinted = True
                print(BASELINE_HINT, file=sys.stderr)
