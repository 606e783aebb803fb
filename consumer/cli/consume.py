"""``stockwatch consume``: the streaming scorer (see :mod:`consumer.scoring.loop` for the loop).

Signals: the first SIGTERM/SIGINT finishes the current batch, flushes, commits and leaves the
group (exit 0); a second one exits at once (exit 128 + signal number). Exit 3 (EXIT_NOT_COMMITTED)
when the last offsets could not be committed (the member was no longer in the group, or was
fenced by another instance with its ``group_instance_id``): those records are processed again.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from consumer.cli.argtypes import positive_int, seconds
from consumer.cli.config import no_rules_warning
from consumer.cli.failures import EXIT_STATUS_HELP, UserFacingError, check_mongo_uri, missing_model_dir

if TYPE_CHECKING:  # the service's modules (Kafka, numba) load only when `consume` runs
    from config import Settings
    from consumer.cli import Subparsers
    from consumer.scoring.loop import ScoringService

__all__ = ["EXIT_NOT_COMMITTED", "cmd_consume", "register"]

log = logging.getLogger(__name__)

EXIT_NOT_COMMITTED = 3


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``consume`` command."""
    consume = subparsers.add_parser(
        "consume",
        parents=[common],
        help="score stock updates from Kafka and publish anomaly events",
        description="Consume the input topic (STOCKWATCH_INPUT_TOPIC), score each batch with the current "
        "model, publish anomalies (and dead letters); settings come from STOCKWATCH_* and the config "
        f"file. {EXIT_STATUS_HELP.rstrip('.')}; 3 the last offsets could not be committed (fenced, or "
        "no longer in the group): the next owner processes them again.",
    )
    consume.add_argument(
        "--max-events", type=positive_int, default=None, help="stop after this many input records"
    )
    consume.add_argument("--timeout", type=seconds, default=None, help="stop after this many seconds")
    consume.add_argument(
        "--model-dir", type=Path, default=None, help="model directory (default: STOCKWATCH_MODEL_DIR)"
    )
    consume.set_defaults(handler=cmd_consume)


def _install_signal_handlers(service: ScoringService) -> None:
    received: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        if received:
            os._exit(128 + signum)  # second signal: leave now, without cleanup
        received.append(signum)
        log.info("%s received: finishing the current batch, then stopping", signal.Signals(signum).name)
        service.request_stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _uses_mongo(settings: Settings) -> bool:
    """Whether this consume reads or writes Mongo (audit, state seeds, suppressions)."""
    scoring = settings.scoring
    return scoring.audit_anomalies or scoring.state_seed != "none" or scoring.alert_mode == "episodes"


def cmd_consume(args: argparse.Namespace, settings: Settings) -> int:
    """Run the scorer until a signal, ``--max-events`` or ``--timeout``."""
    if args.model_dir is not None:
        settings = settings.model_copy(update={"model_dir": args.model_dir})
    problem = missing_model_dir(settings.models.dir, args.model_dir)
    if problem is not None:
        raise problem
    kafka, http = settings.kafka, settings.http
    from consumer.adapters.kafka import existing_topics
    from consumer.stores import store_from_settings

    try:
        store_from_settings(settings)
    except ValueError as exc:  # an empty signing key
        raise UserFacingError(str(exc), status=2) from None
    if _uses_mongo(settings):  # a malformed URI is a setting to fix: refused here, never retried later
        check_mongo_uri(settings)
    # A short, quiet probe (bounded by --timeout too) before the heavy imports (numba, scikit-learn):
    # the clients below would retry a missing broker for half a minute, with an ERROR line each time.
    existing_topics(kafka, timeout_s=min(kafka.bootstrap_timeout_s, args.timeout or math.inf))
    from consumer.scoring.health import HealthServer
    from consumer.scoring.wiring import build_service, settle_heap

    service = build_service(settings)
    server = None
    if http.port:
        try:  # the constructor binds the port
            server = HealthServer(service.health, service.metrics, host=http.host, port=http.port)
            server.start()
        except OSError as exc:
            raise UserFacingError(
                f"cannot serve metrics on {http.host}:{http.port} (STOCKWATCH_HTTP_PORT, "
                f"STOCKWATCH_HTTP_HOST): {exc.strerror or exc}"
            ) from None
    log.info(  # after the checks: a failure is the one line on stderr
        "consume: %s -> %s (dlq %s), group %s, delivery %s, models in %s",
        kafka.topics.input,
        kafka.topics.anomalies,
        kafka.topics.dlq,
        kafka.group_id,
        kafka.delivery,
        settings.models.dir,
    )
    if settings.models.detector == "default" and (warning := no_rules_warning(settings)):
        log.warning(warning)
    _install_signal_handlers(service)
    settle_heap()
    try:
        stats = service.run(max_events=args.max_events, timeout=args.timeout)
    finally:
        if server is not None:
            server.stop()
    if not stats.final_commit:
        log.error(
            "exiting with status %d: the last offsets were not committed (%s)",
            EXIT_NOT_COMMITTED,
            stats.final_error
            or ("fenced by another instance" if stats.stopped_by == "fenced" else "refused by the group"),
        )
        return EXIT_NOT_COMMITTED
    return 0
