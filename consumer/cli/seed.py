"""``stockwatch seed --items FILE``: load a JSON-lines items file into the Mongo inventory collection.

Each valid line is written over the document with its ``item_id`` (running it twice changes
nothing; other items stay); invalid lines are reported on stderr (the first few, one per line, then a
count of the rest) and skipped. It is
what the compose file's one-shot ``seed`` service runs, so the retrain worker has items to train on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from consumer.cli.failures import check_mongo_uri
from consumer.cli.files import FileOptionError, open_file
from consumer.cli.rejections import RejectedLines, no_valid_line

if TYPE_CHECKING:
    from config import Settings
    from consumer.cli import Subparsers

__all__ = ["cmd_seed", "register"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_BATCH = 1000  # documents per bulk write


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``seed`` command."""
    seed = subparsers.add_parser(
        "seed",
        parents=[common],
        help="load a JSON-lines items file into the Mongo inventory collection",
        description="Upserts each valid line by item_id into mongo_db.mongo_collection (settings). "
        "Exit status: 0 loaded (invalid lines are reported and skipped), 1 Mongo unreachable or "
        "refused, 2 the file cannot be read or holds no valid item.",
    )
    seed.add_argument(
        "--items", type=Path, required=True, help="JSON lines, one item (with item_id) per line"
    )
    seed.set_defaults(handler=cmd_seed)


def _read_items(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The valid items of ``path`` (as written) and how many lines were rejected (each reported)."""
    from detection import ItemValidationError, parse_item

    docs: list[dict[str, Any]] = []
    report = RejectedLines(str(path), prefix="stockwatch seed")
    with open_file(path, "--items") as source:
        for lineno, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                raw = orjson.loads(line)
                if not isinstance(raw, dict):
                    raise ItemValidationError(f"expected a JSON object, got {type(raw).__name__}")
                parse_item(raw, require_id=True)
            except orjson.JSONDecodeError as exc:
                reason = f"invalid JSON ({exc})"
            except ItemValidationError as exc:
                reason = exc.reason
            else:
                docs.append(raw)
                continue
            report.add(lineno, reason)
    report.finish()
    return docs, report.count


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    """Upsert the file's valid items; print one JSON summary line."""
    try:
        docs, rejected = _read_items(args.items)
    except OSError as exc:  # past the open: a read error
        problem = exc if isinstance(exc, FileOptionError) else f"--items: cannot read {args.items}: {exc}"
        print(f"stockwatch seed: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if not docs:
        print(f"stockwatch seed: {no_valid_line('--items', str(args.items), rejected)}", file=sys.stderr)
        return EXIT_USAGE
    check_mongo_uri(settings)
    from consumer.adapters.mongo import MongoUnavailableError, upsert_items
    from consumer.chunks import chunked

    docs = list({doc["item_id"]: doc for doc in docs}.values())  # a repeated item: its last line wins

    mongo = settings.mongo
    inserted = replaced = 0
    try:
        for batch in chunked(docs, _BATCH):
            new, old = upsert_items(
                mongo.uri, mongo.db, mongo.collection, batch, timeout_ms=int(mongo.timeout_s * 1000)
            )
            inserted, replaced = inserted + new, replaced + old
    except MongoUnavailableError as exc:
        first = str(exc).splitlines()[0][:300]  # pymongo's topology description runs for lines
        print(
            f"stockwatch seed: MongoDB at {mongo.safe_uri} (STOCKWATCH_MONGO_URI): {first}", file=sys.stderr
        )
        return EXIT_FAILED
    summary = {
        "seeded": f"{mongo.db}.{mongo.collection}",
        "inserted": inserted,
        "replaced": replaced,
        "rejected": rejected,
    }
    print(orjson.dumps(summary).decode(), flush=True)
    return EXIT_OK
