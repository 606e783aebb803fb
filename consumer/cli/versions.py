"""``stockwatch models list|show|rollback``: the versions in the model directory."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import orjson

from consumer.cli.failures import EXIT_STATUS_HELP
from consumer.cli.models import EXIT_OK, EXIT_USAGE, fail, open_store, store_options

if TYPE_CHECKING:
    from config import Settings
    from consumer.cli import Subparsers

__all__ = ["register"]


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``models`` command group."""
    store_opts = store_options(common)
    usage = EXIT_STATUS_HELP
    models = subparsers.add_parser(
        "models",
        help="list, show or roll back stored model versions",
        description=f"List, show or roll back the versions in the model directory. {usage}",
    )
    actions = models.add_subparsers(
        dest="models_command", metavar="ACTION", required=True, help="what to do with the versions"
    )
    listing = actions.add_parser("list", parents=[store_opts], help="stored versions, oldest first")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(handler=cmd_models_list)
    show = actions.add_parser("show", parents=[store_opts], help="a version's metadata as JSON")
    show.add_argument("version", nargs="?", default=None, help="version id (default: CURRENT)")
    show.set_defaults(handler=cmd_models_show)
    rollback = actions.add_parser("rollback", parents=[store_opts], help="point CURRENT at a kept version")
    rollback.add_argument("version", help="the kept version to make CURRENT")
    rollback.set_defaults(handler=cmd_models_rollback)


# ---------------------------------------------------------------------------- models


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the stored versions as a table or as JSON."""
    from detection import ModelNotFoundError, ModelVerificationError

    store = open_store(args, settings)
    try:
        infos = store.versions()
    except (ModelNotFoundError, ModelVerificationError) as exc:
        fail(f"models list: {exc}")
        return EXIT_USAGE
    except OSError as exc:  # not a directory, unreadable
        fail(f"models list: cannot read {store.root}: {exc.strerror or exc}")
        return EXIT_USAGE
    if args.json:
        rows = [
            {
                "version": info.version,
                "created_at": info.created_at.isoformat() if info.created_at else None,
                "n_samples": info.n_samples,
                "threshold": info.threshold,
                "is_current": info.is_current,
                "signed": info.signed,
                "error": info.error,
                "detector": info.detector,
            }
            for info in infos
        ]
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    print(
        f"  {'VERSION':<26} {'DETECTOR':<9} {'CREATED (UTC)':<20} {'SAMPLES':>8} {'THRESHOLD':>10} SIGNED  ERROR"
    )
    for info in infos:
        created = info.created_at.strftime("%Y-%m-%d %H:%M:%S") if info.created_at else "-"
        samples = "-" if info.n_samples is None else str(info.n_samples)
        threshold = "-" if info.threshold is None else f"{info.threshold:g}"
        print(
            f"{'*' if info.is_current else ' '} {info.version:<26} {info.detector or '-':<9} {created:<20} {samples:>8} "
            f"{threshold:>10} {'-' if info.error else 'yes' if info.signed else 'no':<7} {info.error or ''}".rstrip()
        )
    return EXIT_OK


def cmd_models_show(args: argparse.Namespace, settings: Settings) -> int:
    """Print one version's verified metadata as JSON, with its analyst feedback counts when Mongo answers."""
    from consumer.retraining.report import REPORT_FILE
    from detection import ModelNotFoundError, ModelVerificationError

    store = open_store(args, settings)
    try:
        version = args.version or store.current_version()
        if version is None:
            raise ModelNotFoundError(f"no model published yet in {store.root}")
        meta = store.metadata(version)
    except (ModelNotFoundError, ModelVerificationError) as exc:
        fail(f"models show: {exc}")
        return EXIT_USAGE
    from consumer.cli.feedback import feedback_counts
    from detection.params import shown_params

    shown = orjson.loads(meta.model_dump_json())
    shown["params"] = shown_params(meta.params, meta.detector)  # a default model has no contamination

    feedback = feedback_counts(settings, version)
    if feedback is not None:
        shown["feedback"] = feedback
    print(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
    report = store.root / version / REPORT_FILE  # the retrain worker's PNG (not in the manifest)
    if report.exists():
        print(f"report: {report}", file=sys.stderr)
    return EXIT_OK


def cmd_models_rollback(args: argparse.Namespace, settings: Settings) -> int:
    """Verify a kept version and switch CURRENT to it."""
    from detection import ModelNotFoundError, ModelVerificationError

    store = open_store(args, settings)
    try:
        previous = store.current_version()
        store.rollback(args.version)
    except (ModelNotFoundError, ModelVerificationError) as exc:
        fail(f"models rollback: {exc}")
        return EXIT_USAGE
    print(orjson.dumps({"current": args.version, "previous": previous}).decode())
    return EXIT_OK
