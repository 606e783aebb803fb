"""``stockwatch retrain-worker``: keeps the model fresh (control topic, schedule)."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from consumer.cli.argtypes import seconds
from consumer.cli.config import no_rules_warning
from consumer.cli.failures import EXIT_STATUS_HELP, UserFacingError, check_mongo_uri

if TYPE_CHECKING:
    from config import Settings
    from consumer.cli import Subparsers

__all__ = ["cmd_retrain_worker", "register"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED = 0, 1


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``retrain-worker`` command."""
    worker = subparsers.add_parser(
        "retrain-worker",
        parents=[common],
        help="keep the model fresh (control topic, schedule)",
        description="Retrain on `stockwatch ctl retrain`, on the schedule and at start-up when the store "
        f"is empty; publish to the model directory (created if missing). {EXIT_STATUS_HELP}",
    )
    worker.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="model directory to publish to (default: STOCKWATCH_MODEL_DIR)",
    )
    worker.add_argument("--run-for", type=seconds, default=None, help=argparse.SUPPRESS)  # tests and demos
    worker.set_defaults(handler=cmd_retrain_worker)


def cmd_retrain_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run the worker until SIGTERM/SIGINT (or ``--run-for`` seconds)."""
    if args.model_dir is not None:
        settings = settings.model_copy(update={"model_dir": args.model_dir})
    if settings.control.key is None:
        log.warning("no STOCKWATCH_CONTROL_KEY: every control command will be rejected")
    if settings.models.detector == "default" and (warning := no_rules_warning(settings)):
        log.warning(warning)
    check_mongo_uri(settings)  # before Kafka's probe: a malformed URI is a setting to fix, at once
    from consumer.adapters.kafka import existing_topics

    # A short, quiet probe first, before the heavy imports (scikit-learn, seconds on a busy host):
    # the clients below would retry a missing broker for half a minute.
    existing_topics(settings.kafka, timeout_s=settings.kafka.bootstrap_timeout_s)
    from consumer.retraining.wiring import build_worker, worker_monitor, worker_server

    monitor = worker_monitor(settings)
    http = settings.http
    server = None
    if http.worker_port:
        try:  # bound before connecting anywhere: a taken port fails at once
            server = worker_server(monitor, settings)
        except OSError as exc:
            raise UserFacingError(
                f"cannot serve metrics on {http.host}:{http.worker_port} "
                f"(STOCKWATCH_WORKER_HTTP_PORT, STOCKWATCH_HTTP_HOST): {exc.strerror or exc}"
            ) from None
    try:
        worker, closables = build_worker(settings, monitor=monitor)
    except ValueError as exc:  # an unusable setting (exclude filter, signing key)
        raise UserFacingError(str(exc), status=2) from None
    except BaseException:  # Kafka, Mongo: one line from main(); the port is released first
        if server is not None:
            server.stop()
        raise
    stop = lambda *_: worker.stop_event.set()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("retrain worker %s listening on %s", worker.lease.owner, settings.kafka.topics.control)
    if server is not None:
        server.start()
    try:
        worker.run(timeout_s=args.run_for)
    finally:
        log.info("retrain worker %s stopped", worker.lease.owner)
        if server is not None:
            server.stop()
        for c in closables:
            c.close()
    return EXIT_OK
