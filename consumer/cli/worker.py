"""``stockwatch retrain-worker``: keeps the model fresh (control topic, schedule)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config import Settings
    from consumer.cli import Subparsers

__all__ = ["cmd_retrain_worker", "register"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED = 0, 1


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``retrain-worker`` command."""
    worker = subparsers.add_parser(
        "retrain-worker", parents=[common], help="keep the model fresh (control topic, schedule)"
    )
    worker.add_argument("--run-for", type=float, default=None, help=argparse.SUPPRESS)  # tests and demos
    worker.set_defaults(handler=cmd_retrain_worker)


def cmd_retrain_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run the worker until SIGTERM/SIGINT (or ``--run-for`` seconds)."""
    if settings.control.key is None:
        log.warning("no STOCKWATCH_CONTROL_KEY: every control command will be rejected")
    from consumer.ports import KafkaUnavailableError, MongoUnavailableError
    from consumer.retraining.wiring import build_worker, worker_monitor, worker_server

    monitor = worker_monitor(settings)
    http = settings.http
    server = None
    if http.worker_port:
        try:  # bound before connecting anywhere: a taken port fails at once
            server = worker_server(monitor, settings)
        except OSError as exc:
            print(
                f"stockwatch retrain-worker: cannot serve metrics on {http.host}:{http.worker_port} "
                f"(STOCKWATCH_WORKER_HTTP_PORT, STOCKWATCH_HTTP_HOST): {exc.strerror or exc}",
                file=sys.stderr,
            )
            return EXIT_FAILED
    try:
        worker, closables = build_worker(settings, monitor=monitor)
    except (KafkaUnavailableError, MongoUnavailableError, ValueError) as exc:
        print(f"stockwatch retrain-worker: {exc}", file=sys.stderr)
        if server is not None:
            server.stop()
        return EXIT_FAILED
    stop = lambda *_: worker.stop_event.set()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("retrain worker %s listening on %s", worker.lease.owner, settings.kafka.topics.control)
    if server is not None:
        server.start()
    try:
        worker.run(timeout_s=args.run_for)
    finally:
        if server is not None:
            server.stop()
        for c in closables:
            c.close()
    return EXIT_OK
