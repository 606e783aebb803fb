"""``stockwatch train`` and ``stockwatch score`` (``models list|show|rollback``: :mod:`.versions`)."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import orjson

from consumer.cli.alert_options import add_alert_options, alert_flags_problem, open_alert_sink
from consumer.cli.argtypes import auto_or as _auto_or
from consumer.cli.argtypes import finite_float, positive_int
from consumer.cli.argtypes import int_or_float as _int_or_float
from consumer.cli.config import no_rules_warning
from consumer.cli.failures import EXIT_STATUS_HELP, UserFacingError, missing_model_dir
from consumer.cli.files import fail, open_in, open_out, same_file_problem
from consumer.cli.rejections import SHOWN_REJECTIONS, RejectedLines, no_valid_line

if TYPE_CHECKING:  # detection's model code (sklearn, numba) loads only in the commands that score
    from config import Settings
    from consumer.cli import Subparsers
    from consumer.cli.score_alerts import AlertSink
    from consumer.wire.context import EventContext
    from detection import AnomalyModel, ModelStore, StockItem

__all__ = ["EXIT_OK", "EXIT_USAGE", "fail", "open_store", "register", "store_options"]

_fail, _open_in, _open_out = fail, open_in, open_out

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
CHUNK_LINES = 10_000


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the train and score commands."""
    store_opts = store_options(common)
    usage = f"{EXIT_STATUS_HELP}"

    train = subparsers.add_parser(
        "train",
        parents=[store_opts],
        help="train a model and publish it",
        description="Train an IsolationForest on a JSON-lines file and publish it to the model directory "
        f"(created if missing); prints a JSON summary. {usage}",
    )
    train.add_argument("--items", type=Path, required=True, help="JSON lines, one item per line")
    train.add_argument(
        "--contamination",
        type=_auto_or(float),
        default=None,
        help="expected share of anomalies in the training items, or auto (default: 0.1)",
    )
    train.add_argument(
        "--n-estimators", type=int, default=None, help="number of trees in the forest (default: 100)"
    )
    train.add_argument(
        "--max-samples",
        type=_auto_or(_int_or_float),
        default=None,
        help="items drawn per tree: a count, a fraction, or auto (default: auto)",
    )
    train.add_argument(
        "--random-state", type=int, default=None, help="seed, for a reproducible forest (default: 42)"
    )
    train.add_argument(
        "--threshold", type=finite_float, default=None, help="seed: score < threshold => anomaly (default: 0)"
    )
    train.add_argument(
        "--detector",
        choices=("seed", "default"),
        default=None,
        help="seed (state features) or default (changes per item); default: settings detector",
    )
    train.add_argument("--alert-budget-per-1000", type=float, default=None,
                       help="default detector: model alerts per 1,000 normal updates (default: settings alert_budget_per_1000)")  # fmt: skip
    train.add_argument("--group-field", default=None, metavar="FIELD",
                       help='default detector: the field grouping an item with its peers, "" or none for no '
                       "grouping (default: settings peer_group_field, category)")  # fmt: skip
    train.set_defaults(handler=cmd_train)

    score = subparsers.add_parser(
        "score",
        parents=[store_opts],
        help="score JSON lines of stock updates",
        description="One decision line per valid input line; rejected lines are reported on stderr. "
        "Exit status: 0 every line scored; 1 some lines were rejected, or the model directory "
        "is missing; 2 usage (a bad flag, input file or setting, no model or a refused one).",
    )
    score.add_argument("--input", default="-", help="JSON lines file, or - for stdin (default)")
    score.add_argument("--output", default="-", help="decisions file, or - for stdout (default)")
    score.add_argument(
        "--model-version", dest="model_version", default=None, help="model version (default: CURRENT)"
    )
    # `--version` was this flag's first name; it still works, but `stockwatch --version` is the program's.
    score.add_argument("--version", dest="model_version", default=None, help=argparse.SUPPRESS)
    score.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="default detector: JSON lines snapshot seeding the item states (what Mongo holds)",
    )
    add_alert_options(score)
    score.add_argument("--chunk-size", type=positive_int, default=CHUNK_LINES, help=argparse.SUPPRESS)
    score.set_defaults(handler=cmd_score)


def store_options(common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A parent parser: ``common`` plus ``--model-dir``."""
    store_opts = argparse.ArgumentParser(add_help=False, parents=[common])
    store_opts.add_argument(
        "--model-dir", type=Path, default=None, help="model directory (default: STOCKWATCH_MODEL_DIR)"
    )
    return store_opts


def open_store(args: argparse.Namespace, settings: Settings, *, must_exist: bool = True) -> ModelStore:
    """The model store named by ``--model-dir`` or the settings, with the settings' key and policy.

    ``must_exist``: a missing directory is a one-line failure (exit 1) rather than an empty store.
    """
    from consumer.stores import store_from_settings

    if must_exist:
        problem = missing_model_dir(args.model_dir or settings.models.dir, args.model_dir)
        if problem is not None:
            raise problem
    try:
        return store_from_settings(settings, args.model_dir)
    except ValueError as exc:
        raise UserFacingError(str(exc), EXIT_USAGE) from None


# ---------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    """Train on a JSON-lines file and publish; prints a JSON summary (exit 2 on unusable input)."""
    import numpy as np
    from pydantic import ValidationError

    from consumer.cli.forest_flags import forest_params
    from detection import TrainingError, train_model

    detector = args.detector or settings.models.detector
    if detector == "default":
        from consumer.cli.changes import train_default

        if warning := no_rules_warning(settings):
            logger.warning(warning)
        return train_default(args, settings)
    for flag, value in (
        ("--alert-budget-per-1000", args.alert_budget_per_1000),
        ("--group-field", args.group_field),
    ):
        if value is not None:
            _fail(f"train: {flag} applies to --detector default only")
            return EXIT_USAGE
    chosen = {
        "contamination": args.contamination,
        "n_estimators": args.n_estimators,
        "max_samples": args.max_samples,
        "random_state": args.random_state,
    }
    counts = {"rejected": 0}
    try:
        params = forest_params(chosen)
        with _open_in(str(args.items), "--items") as source:
            lines = _valid_lines(source, require_id=False, counts=counts, shown=SHOWN_REJECTIONS)
            items = [item for _, item, _, _ in lines]
        if not items:
            raise TrainingError(no_valid_line("--items", str(args.items), counts["rejected"]))
        started = time.perf_counter()
        model = train_model(items, params, threshold=0.0 if args.threshold is None else args.threshold)
        seconds = time.perf_counter() - started
    except (TrainingError, ValidationError, OSError) as exc:
        fail(f"train: {exc}")
        return EXIT_USAGE
    store = open_store(args, settings, must_exist=False)
    try:
        version = store.publish(model)
    except OSError as exc:
        fail(f"train: cannot publish to {store.root}: {exc}")
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
        "detector": "seed",
    }
    sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()
    return EXIT_OK


# ---------------------------------------------------------------------------- score


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    """Score JSON lines chunk by chunk; one event per valid line (docs/schemas/score-line), rejections on stderr."""
    from consumer.chunks import chunked
    from consumer.wire.context import EventContext
    from consumer.wire.events import STDIN_SOURCE
    from detection import ChangeDetector, ModelNotFoundError, ModelVerificationError

    problem = alert_flags_problem(args) or same_file_problem(
        {"--input": args.input, "--baseline": args.baseline, "--suppressions": args.suppressions},
        {"--output": args.output, "--alerts": args.alerts},
    )
    if problem:
        fail(f"score: {problem}")
        return EXIT_USAGE
    try:
        store = open_store(args, settings)
        model = store.load_any(args.model_version)
    except (ModelNotFoundError, ModelVerificationError) as exc:
        fail(f"score: {exc}")
        return EXIT_USAGE
    context = EventContext.from_settings(settings.context, store.root)  # attributes and links, as consume
    counts = {"scored": 0, "rejected": 0}
    topic = STDIN_SOURCE if args.input == "-" else f"file:{args.input}"
    try:
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(
                _open_in(args.input, "--input")
            )  # inputs first: a typo creates no output file
            changes = isinstance(model, ChangeDetector)
            baseline = None
            if changes and args.baseline is not None:
                baseline = stack.enter_context(_open_in(str(args.baseline), "--baseline"))
            alerts = open_alert_sink(args, settings, stack, changes=changes)
            if isinstance(model, ChangeDetector):
                from consumer.cli.changes import score_default

                score_default(
                    model,
                    args,
                    topic,
                    counts,
                    context,
                    inputs=(source, baseline),
                    alerts=alerts,
                    future_skew_s=settings.scoring.future_skew_s,
                )
            else:
                if args.baseline is not None:
                    logger.info("a seed model judges each state alone: --baseline is not used")
                sink = stack.enter_context(_open_out(args.output, "--output"))
                for chunk in chunked(_valid_lines(source, require_id=True, counts=counts), args.chunk_size):
                    _score_chunk(model, chunk, topic, sink, context, alerts=alerts)
                    counts["scored"] += len(chunk)
    except BrokenPipeError:
        raise  # the reader of our output left; main() handles it
    except OSError as exc:
        fail(f"score: {exc}")
        return EXIT_USAGE
    logger.info(
        "scored %d lines, rejected %d (model %s)", counts["scored"], counts["rejected"], model.version
    )
    return EXIT_REJECTED if counts["rejected"] else EXIT_OK


def _score_chunk(
    model: AnomalyModel,
    chunk: list[tuple[int, StockItem, dict[str, Any], str]],
    topic: str,
    sink: IO[bytes],
    context: EventContext,
    *,
    alerts: AlertSink | None = None,
) -> None:
    """Decide a chunk in one vectorised call; one event line per item, in order: an anomaly event
    when anomalous, else a decision event (source = ``topic``, partition 0, offset = line number)."""
    import numpy as np

    from consumer.wire.context import SEED_INPUT_KEYS
    from consumer.wire.events import UNVERSIONED, Coordinates, build_events

    items = [item for _, item, _, _ in chunk]
    version = model.version or UNVERSIONED
    decisions = model.decide(items)
    events = list(build_events(
        decisions,
        np.arange(len(items)),
        item_ids=cast(list[str], [item.item_id for item in items]),  # require_id=True: never None
        event_ids=[item.event_id for item in items],
        sources=[Coordinates(topic, 0, lineno, None, content) for lineno, _, _, content in chunk],
        item=lambda i: items[i].model_dump(mode="json"),
        version=version,
        threshold=float(model.threshold),
        now=datetime.now(UTC),
        attributes=lambda i: context.attributes(chunk[i][2], SEED_INPUT_KEYS),
        links=context.links(version),
    ))  # fmt: skip
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    sink.write(b"".join(dumps(anomaly or decision, option=newline) for _, decision, anomaly in events))
    sink.flush()
    if alerts is not None:
        alerts.write_anomalies(events)


def _valid_lines(
    source: IO[bytes], *, require_id: bool, counts: dict[str, int] | None = None, shown: int | None = None
) -> Iterator[tuple[int, StockItem, dict[str, Any], str]]:
    """(line number, item, its JSON object, input_digest) for each valid line; invalid ones are
    reported on stderr (``shown``: only the first so many, then a count of the rest)."""
    from consumer.wire.events import input_digest
    from detection import ItemValidationError, parse_item

    report = RejectedLines(getattr(source, "name", "-"), shown=shown)
    running = hashlib.sha256()
    for lineno, line in enumerate(source, start=1):
        running.update(line)
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
            if not isinstance(raw, dict):
                raise ItemValidationError(f"expected a JSON object, got {type(raw).__name__}")
            item = parse_item(raw, require_id=require_id)
        except (orjson.JSONDecodeError, ItemValidationError) as exc:
            reason = f"invalid JSON ({exc})" if isinstance(exc, orjson.JSONDecodeError) else exc.reason
            report.add(lineno, reason)
            if counts is not None:
                counts["rejected"] += 1
            continue
        yield lineno, item, raw, input_digest(running)
    report.finish()
