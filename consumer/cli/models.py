"""``stockwatch train``, ``stockwatch score`` and ``stockwatch models list|show|rollback``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import orjson

if TYPE_CHECKING:  # detection's model code (sklearn, numba) loads only in the commands that score
    from config import Settings
    from consumer.cli import Subparsers
    from detection import AnomalyModel, ModelStore, StockItem

__all__ = ["open_store", "register"]

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
CHUNK_LINES = 10_000


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the train, score and models commands."""
    store_opts = argparse.ArgumentParser(add_help=False, parents=[common])
    store_opts.add_argument(
        "--model-dir", type=Path, default=None, help="model directory (default: settings model_dir)"
    )

    train = subparsers.add_parser("train", parents=[store_opts], help="train a model and publish it")
    train.add_argument("--items", type=Path, required=True, help="JSON lines, one item per line")
    train.add_argument("--contamination", type=_auto_or(float), default=None)
    train.add_argument("--n-estimators", type=int, default=None)
    train.add_argument("--max-samples", type=_auto_or(_int_or_float), default=None)
    train.add_argument("--random-state", type=int, default=None)
    train.add_argument("--threshold", type=float, default=0.0, help="score < threshold => anomaly")
    train.set_defaults(handler=cmd_train)

    score = subparsers.add_parser("score", parents=[store_opts], help="score JSON lines of stock updates")
    score.add_argument("--input", default="-", help="JSON lines file, or - for stdin (default)")
    score.add_argument("--output", default="-", help="decisions file, or - for stdout (default)")
    score.add_argument(
        "--version", dest="model_version", default=None, help="model version (default: CURRENT)"
    )
    score.add_argument("--chunk-size", type=int, default=CHUNK_LINES, help=argparse.SUPPRESS)
    score.set_defaults(handler=cmd_score)

    models = subparsers.add_parser("models", help="list, show or roll back stored model versions")
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[store_opts], help="stored versions, oldest first")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(handler=cmd_models_list)
    show = actions.add_parser("show", parents=[store_opts], help="a version's metadata as JSON")
    show.add_argument("version", nargs="?", default=None, help="version id (default: CURRENT)")
    show.set_defaults(handler=cmd_models_show)
    rollback = actions.add_parser("rollback", parents=[store_opts], help="point CURRENT at a kept version")
    rollback.add_argument("version")
    rollback.set_defaults(handler=cmd_models_rollback)


def open_store(args: argparse.Namespace, settings: Settings) -> ModelStore:
    """The model store named by ``--model-dir`` or the settings, with the settings' key and policy."""
    from consumer.stores import store_from_settings

    try:
        return store_from_settings(settings, args.model_dir)
    except ValueError as exc:
        _fail(str(exc))
        raise SystemExit(EXIT_USAGE) from exc


# ---------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    """Train on a JSON-lines file and publish; prints a JSON summary (exit 2 on unusable input)."""
    import numpy as np
    from pydantic import ValidationError

    from detection import ForestParams, TrainingError, train_model

    chosen = {
        "contamination": args.contamination,
        "n_estimators": args.n_estimators,
        "max_samples": args.max_samples,
        "random_state": args.random_state,
    }
    counts = {"rejected": 0}
    try:
        params = ForestParams(**{name: value for name, value in chosen.items() if value is not None})
        with _open_in(str(args.items)) as source:
            items = [item for _, item in _valid_lines(source, require_id=False, counts=counts)]
        started = time.perf_counter()
        model = train_model(items, params, threshold=args.threshold)
        seconds = time.perf_counter() - started
    except (TrainingError, ValidationError, OSError) as exc:
        _fail(f"train: {exc}")
        return EXIT_USAGE
    store = open_store(args, settings)
    try:
        version = store.publish(model)
    except OSError as exc:
        _fail(f"train: cannot publish to {store.root}: {exc}")
        return EXIT_USAGE
    summary = {
        "version": version,
        "model_dir": str(store.root),
        "n_samples": len(items),
        "rejected_lines": counts["rejected"],
        "threshold": model.threshold,
        "offset": float(model.forest.offset_),
        "anomaly_rate": float(np.mean(model.decide(items).is_anomaly)),
        "training_seconds": round(seconds, 3),
        "params": params.model_dump(mode="json"),
    }
    sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()
    return EXIT_OK


# ---------------------------------------------------------------------------- score


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    """Score JSON lines chunk by chunk; one event per valid line (docs/schemas/score-line), rejections on stderr."""
    from consumer.chunks import chunked
    from consumer.wire.events import STDIN_SOURCE
    from detection import ModelNotFoundError, ModelVerificationError

    try:
        model = open_store(args, settings).load(args.model_version)
    except (ModelNotFoundError, ModelVerificationError) as exc:
        _fail(f"score: {exc}")
        return EXIT_USAGE
    counts = {"scored": 0, "rejected": 0}
    topic = STDIN_SOURCE if args.input == "-" else f"file:{args.input}"
    try:
        with _open_in(args.input) as source, _open_out(args.output) as sink:
            for chunk in chunked(_valid_lines(source, require_id=True, counts=counts), args.chunk_size):
                _score_chunk(model, chunk, topic, sink)
                counts["scored"] += len(chunk)
    except BrokenPipeError:
        raise  # the reader of our output left; main() handles it
    except OSError as exc:
        _fail(f"score: {exc}")
        return EXIT_USAGE
    logger.info(
        "scored %d lines, rejected %d (model %s)", counts["scored"], counts["rejected"], model.version
    )
    return EXIT_REJECTED if counts["rejected"] else EXIT_OK


def _score_chunk(
    model: AnomalyModel, chunk: list[tuple[int, StockItem]], topic: str, sink: IO[bytes]
) -> None:
    """Decide a chunk in one vectorised call; one event line per item, in order: an anomaly event
    when anomalous, else a decision event (source = ``topic``, partition 0, offset = line number)."""
    import numpy as np

    from consumer.wire.events import UNVERSIONED, Coordinates, build_events

    items = [item for _, item in chunk]
    decisions = model.decide(items)
    events = build_events(
        decisions,
        np.arange(len(items)),
        item_ids=cast(list[str], [item.item_id for item in items]),  # require_id=True: never None
        event_ids=[item.event_id for item in items],
        sources=[Coordinates(topic, 0, lineno) for lineno, _ in chunk],
        item=lambda i: items[i].model_dump(mode="json"),
        version=model.version or UNVERSIONED,
        threshold=float(model.threshold),
        now=datetime.now(UTC),
    )
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    sink.write(b"".join(dumps(anomaly or decision, option=newline) for _, decision, anomaly in events))
    sink.flush()


def _valid_lines(
    source: IO[bytes], *, require_id: bool, counts: dict[str, int] | None = None
) -> Iterator[tuple[int, StockItem]]:
    """(line number, item) for each valid line; each invalid one is reported on stderr."""
    from detection import ItemValidationError, parse_item

    for lineno, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
            if not isinstance(raw, dict):
                raise ItemValidationError(f"expected a JSON object, got {type(raw).__name__}")
            item = parse_item(raw, require_id=require_id)
        except (orjson.JSONDecodeError, ItemValidationError) as exc:
            reason = f"invalid JSON ({exc})" if isinstance(exc, orjson.JSONDecodeError) else exc.reason
            name = getattr(source, "name", "-")
            print(f"stockwatch: {name}: line {lineno}: rejected: {reason}", file=sys.stderr)
            if counts is not None:
                counts["rejected"] += 1
            continue
        yield lineno, item


# ---------------------------------------------------------------------------- models


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the stored versions as a table or as JSON."""
    infos = open_store(args, settings).versions()
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
            }
            for info in infos
        ]
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    print(f"  {'VERSION':<26} {'CREATED (UTC)':<20} {'SAMPLES':>8} {'THRESHOLD':>10} SIGNED  ERROR")
    for info in infos:
        created = info.created_at.strftime("%Y-%m-%d %H:%M:%S") if info.created_at else "-"
        samples = "-" if info.n_samples is None else str(info.n_samples)
        threshold = "-" if info.threshold is None else f"{info.threshold:g}"
        print(
            f"{'*' if info.is_current else ' '} {info.version:<26} {created:<20} {samples:>8} "
            f"{threshold:>10} {'yes' if info.signed else 'no':<7} {info.error or ''}".rstrip()
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
        _fail(f"models show: {exc}")
        return EXIT_USAGE
    shown = orjson.loads(meta.model_dump_json())
    from consumer.cli.feedback import feedback_counts

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
        _fail(f"models rollback: {exc}")
        return EXIT_USAGE
    print(orjson.dumps({"current": args.version, "previous": previous}).decode())
    return EXIT_OK


# ---------------------------------------------------------------------------- helpers


def _fail(message: str) -> None:
    print(f"stockwatch {message}", file=sys.stderr)


@contextlib.contextmanager
def _open_in(name: str) -> Iterator[IO[bytes]]:
    if name == "-":
        yield sys.stdin.buffer
        return
    with open(name, "rb") as fh:
        yield fh


@contextlib.contextmanager
def _open_out(name: str) -> Iterator[IO[bytes]]:
    if name == "-":
        yield sys.stdout.buffer
        return
    with open(name, "wb") as fh:
        yield fh


def _auto_or(convert: Any) -> Any:
    """argparse type: the literal ``auto`` or ``convert(text)``."""

    def parse(text: str) -> Any:
        return "auto" if text == "auto" else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def _int_or_float(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)
