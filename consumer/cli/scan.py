"""``stockwatch scan``: score the whole Mongo inventory once with the current model.

A ``seed`` model scores each document's state; a ``default`` model judges each document as the first
known state of an item, with no history (:mod:`consumer.cli.scan_changes`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from consumer.cli.failures import EXIT_STATUS_HELP, UserFacingError, check_mongo_uri, missing_model_dir

if TYPE_CHECKING:
    from config import Settings
    from consumer.cli import Subparsers
    from consumer.retraining.snapshot import DocCounts

__all__ = ["cmd_scan", "register"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_USAGE = 0, 2


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``scan`` command."""
    scan = subparsers.add_parser(
        "scan",
        parents=[common],
        help="score the whole Mongo inventory with the current model",
        description="Score every document of the inventory collection once with CURRENT; anomaly "
        "events as JSON lines on stdout (or to the anomaly topic), a summary on stderr. A seed model "
        "scores each document's state; a default model (which judges changes of an item) judges each "
        "document as the first known state of an item, with no history: the data-quality rules that "
        "need no previous state (negative stock, min >= max, max = 0, price <= 0 with stock) and the "
        "state's level and price against its peers; rules that compare with a previous state cannot "
        f"fire. {EXIT_STATUS_HELP}",
    )
    scan.add_argument(
        "--publish", action="store_true", help="publish anomalies to the anomaly topic instead of stdout"
    )
    scan.add_argument(
        "--model-dir", type=Path, default=None, help="model directory (default: STOCKWATCH_MODEL_DIR)"
    )
    scan.set_defaults(handler=cmd_scan)


def cmd_scan(args: argparse.Namespace, settings: Settings) -> int:
    """Score the Mongo inventory snapshot with CURRENT; anomalies as JSON lines or to the anomaly topic."""
    from consumer.adapters.kafka import JsonPublisher, existing_topics
    from consumer.retraining.snapshot import DocCounts
    from consumer.retraining.wiring import worker_mongo
    from consumer.stores import store_from_settings
    from consumer.wire.events import UNVERSIONED

    check_mongo_uri(settings)  # before the model and Kafka: a setting to fix, at once
    problem = missing_model_dir(args.model_dir or settings.models.dir, args.model_dir)
    if problem is not None:
        raise problem
    try:
        store = store_from_settings(settings, args.model_dir)
    except ValueError as exc:  # an empty signing key
        raise UserFacingError(str(exc), EXIT_USAGE) from None
    model = store.load_any()  # refusals: one line from main()
    version = model.version or UNVERSIONED
    kafka, retrain = settings.kafka, settings.retrain
    publisher = None
    if args.publish:  # reach Kafka before reading Mongo: a scan is not worth running unpublishable
        existing_topics(kafka, timeout_s=kafka.bootstrap_timeout_s)
        publisher = JsonPublisher(kafka, client_id="stockwatch-scan")
    db = worker_mongo(settings)
    source = f"mongo:{settings.mongo.db}.{settings.mongo.collection}"
    counts, row, found = DocCounts(), 0, 0
    try:
        expected, next_log = db.count_inventory(), retrain.progress_every
        chunks = _scanned_chunks(model, db, retrain.batch_size, source, counts)
        for n, events in chunks:
            row += n
            found += len(events)
            if publisher is not None:
                publisher.publish(kafka.topics.anomalies, events, key_field="item_id")
            else:
                sys.stdout.buffer.write(
                    b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events)
                )
                sys.stdout.flush()
            if counts.read >= next_log:
                next_log = counts.read + retrain.progress_every
                log.info(
                    "scan progress: %d/~%d documents, %d anomalies, %d invalid",
                    counts.read,
                    expected,
                    found,
                    counts.invalid,
                )
    finally:  # Mongo and Kafka failures: one line from main()
        db.close()
        if publisher is not None:
            publisher.close()
    if counts.read == 0:
        log.warning(
            "%s.%s holds no documents: nothing was scanned", settings.mongo.db, settings.mongo.collection
        )
    summary = {"scanned": row, "anomalies": found, "invalid": counts.invalid, "model_version": version}
    print(orjson.dumps(summary).decode(), file=sys.stderr)
    return EXIT_OK


def _scanned_chunks(
    model: Any, db: Any, batch_size: int, source: str, counts: DocCounts
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(items scored, anomaly events) per chunk of the inventory, for either detector."""
    from consumer.chunks import chunked
    from consumer.retraining.snapshot import iter_item_chunks
    from detection import ChangeDetector

    if isinstance(model, ChangeDetector):
        from consumer.cli.scan_changes import inventory_fields, scan_changes

        docs = db.iter_inventory(batch_size=batch_size, fields=inventory_fields(model))
        for chunk in chunked(docs, batch_size):
            yield scan_changes(model, chunk, source, counts.read, counts)  # rows: documents read before
        return
    row = 0
    for items in iter_item_chunks(db.iter_inventory(batch_size=batch_size), chunk_size=batch_size,
                                  require_id=True, counts=counts):  # fmt: skip
        yield len(items), _scan_events(model, items, source, row)
        row += len(items)


def _scan_events(model: Any, chunk: list[Any], source: str, first_row: int) -> list[dict[str, Any]]:
    """Anomaly events for one chunk of items (the one builder of :mod:`consumer.wire.events`).

    ``source`` is ``mongo:<db>.<collection>``, partition 0, offset the row of the scan; since rows
    shift between scans, the ``anomaly_id`` is derived from the item id (``IdBy.ITEM``): scanning an
    item again with the same model yields the same id.
    """
    import numpy as np

    from consumer.wire.events import UNVERSIONED, Coordinates, IdBy, build_events

    decisions = model.decide(chunk)
    events = build_events(
        decisions,
        np.flatnonzero(decisions.is_anomaly),
        item_ids=[item.item_id for item in chunk],
        event_ids=[item.event_id for item in chunk],
        sources=[Coordinates(source, 0, first_row + i) for i in range(len(chunk))],
        item=lambda i: chunk[i].model_dump(mode="json"),
        version=model.version or UNVERSIONED,
        threshold=float(model.threshold),
        now=datetime.now(UTC),
        id_by=IdBy.ITEM,
    )
    return [anomaly for _, _, anomaly in events if anomaly is not None]
