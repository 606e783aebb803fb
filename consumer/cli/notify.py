"""``stockwatch notify --webhook URL``: POST every anomaly event to a webhook (Slack-compatible).

Its own consumer group (``notify_group_id``) on the anomaly topic; at least once, never twice within
a run (:mod:`consumer.notify.bridge`). The URL may hold a token: it is only ever shown masked.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from config import Settings
    from consumer.cli import Subparsers

__all__ = ["cmd_notify", "register"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_USAGE = 0, 2  # 1 (Kafka unavailable) comes from main, as for every command
WEBHOOK_ENV = "STOCKWATCH_NOTIFY_WEBHOOK"  # the notify_webhook setting: keeps a token out of `ps`


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``notify`` command."""
    notify = subparsers.add_parser(
        "notify",
        parents=[common],
        help="POST anomaly events to a webhook (Slack-compatible text)",
        description=f"The URL comes from --webhook or, to keep a token out of the process list, from "
        f"{WEBHOOK_ENV}. Exit status: 0 stopped, 1 broker unreachable, 2 usage.",
    )
    notify.add_argument("--webhook", default=None, metavar="URL", help="http(s) URL to POST each event to")
    notify.add_argument("--run-for", type=float, default=None, help=argparse.SUPPRESS)  # tests
    notify.add_argument("--max-events", type=int, default=None, help=argparse.SUPPRESS)  # tests
    notify.set_defaults(handler=cmd_notify)


def cmd_notify(args: argparse.Namespace, settings: Settings) -> int:
    """Run the bridge until SIGTERM/SIGINT; print its counts as one JSON line."""
    from consumer.notify import NotifyBridge, Webhook

    secret = settings.notify.webhook
    url = args.webhook or (secret.get_secret_value() if secret is not None else None)
    if not url:
        print(f"stockwatch notify: give --webhook URL (or set {WEBHOOK_ENV})", file=sys.stderr)
        return EXIT_USAGE
    try:
        webhook = Webhook(url, timeout_s=settings.notify.timeout_s)
    except ValueError as exc:  # the message describes the URL without quoting it (it may hold a token)
        origin = "--webhook" if args.webhook else WEBHOOK_ENV
        print(f"stockwatch notify: {origin}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from consumer.adapters.kafka import GroupFeed, existing_topics

    kafka = settings.kafka
    # A quiet probe bounded by kafka_bootstrap_timeout_s, as `consume` does: the group consumer would
    # retry a refused login for 30 s. KafkaUnavailableError reaches main: one line naming the SASL settings.
    existing_topics(kafka, timeout_s=kafka.bootstrap_timeout_s)
    feed = GroupFeed(
        kafka,  # its address, security and client properties
        kafka.topics.anomalies,
        group_id=settings.notify.group_id,
        client_id="stockwatch-notify",
    )
    bridge = NotifyBridge(feed=feed, webhook=webhook, max_backoff_s=settings.notify.max_backoff_s)
    stop = lambda *_: bridge.stop_event.set()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "notify: %s -> %s (group %s)", kafka.topics.anomalies, webhook.safe_url, settings.notify.group_id
    )
    try:
        stats = bridge.run(timeout_s=args.run_for, max_events=args.max_events)
    finally:
        feed.close()
    print(orjson.dumps({"notify": webhook.safe_url, **_counts(stats)}).decode(), flush=True)
    return EXIT_OK


def _counts(stats: object) -> dict[str, int]:
    return {
        name: int(getattr(stats, name)) for name in ("delivered", "dead", "duplicates", "invalid", "retries")
    }
