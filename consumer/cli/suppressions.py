"""``stockwatch suppressions list``: the active suppressions stored from ``false_positive`` labels.

The retrain worker stores them in Mongo ``suppressions`` (:mod:`consumer.retraining.feedback`);
this reads them with the worker's Mongo timeout and shows those not yet expired.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

from consumer.cli.failures import check_mongo_uri

if TYPE_CHECKING:
    from config import Settings
    from consumer.cli import Subparsers

__all__ = ["cmd_suppressions_list", "register"]

EXIT_OK = 0


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``suppressions`` command."""
    sup = subparsers.add_parser("suppressions", help="suppressions stored from false_positive labels")
    actions = sup.add_subparsers(dest="suppressions_command", metavar="ACTION", required=True, help="list")
    listing = actions.add_parser(
        "list", parents=[common], help="the active suppressions, soonest expiry first"
    )
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    listing.set_defaults(handler=cmd_suppressions_list)


def cmd_suppressions_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the active suppressions (table, or JSON lines with ``--json``)."""
    from consumer.adapters.mongo import WorkerMongo
    from consumer.wire.suppressions import Suppression, active

    check_mongo_uri(settings)
    db = WorkerMongo.from_settings(settings.mongo)
    try:  # MongoUnavailableError: main's one line, naming the setting, the password masked
        docs = db.suppressions()
    finally:
        db.close()
    stored = []
    for doc in docs:
        try:
            stored.append(Suppression.from_doc(doc))
        except (KeyError, TypeError, ValueError):
            print(
                f"stockwatch suppressions: skipping unreadable document {doc.get('_id')!r}", file=sys.stderr
            )
    now = datetime.now(UTC)
    current = active(stored, now)
    rows = [
        {
            "id": s.episode_id,
            "item_id": s.item_id,
            "reason": s.reason,
            "expires_at": s.expires_at.isoformat(),
            "created_at": s.created_at.isoformat() if s.created_at else None,
            "who": s.who,
            "note": s.note,
        }
        for s in current
    ]
    if args.json:
        for row in rows:
            print(orjson.dumps(row).decode())
    else:
        print(f"{'ITEM':<24} {'EXPIRES (UTC)':<26} {'REASON':<24} {'BY':<24} EPISODE")
        for s in current:
            print(
                f"{s.item_id:<24} {s.expires_at:%Y-%m-%d %H:%M:%S}{'':<7} {(s.reason or '*'):<24} "
                f"{(s.who or '-'):<24} {s.episode_id}"
            )
    return EXIT_OK
