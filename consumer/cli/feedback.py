"""``stockwatch feedback EPISODE_ID confirmed|false_positive [--note …] [--suppress-for 7d]``.

``feedback`` publishes one label (:mod:`consumer.wire.feedback`) to ``feedback_topic``, keyed by the
episode id, and waits for the broker's acknowledgement (acks=all); it prints the message sent.
EPISODE_ID is an episode event's ``episode_id`` (``alert_mode = "episodes"``) or an anomaly event's
``anomaly_id`` (``every-update``, seed models). The retrain worker
stores it (counts per model version, suppressions, training labels).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import re
import socket
import sys
from typing import TYPE_CHECKING, Any

import orjson

from consumer.wire.episode_events import EPISODE_ID_HEX_CHARS
from consumer.wire.feedback import (
    MAX_SUPPRESS_S,
    FeedbackError,
    FeedbackLabel,
    build_feedback,
    parse_duration,
)

if TYPE_CHECKING:
    from config import Settings
    from consumer.cli import Subparsers

__all__ = ["check_event_id", "cmd_feedback", "feedback_counts", "register"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_USAGE = 0, 2  # 1 (Kafka unavailable) comes from main, as for every command


def register(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the ``feedback`` command."""
    fb = subparsers.add_parser(
        "feedback",
        parents=[common],
        help="label an anomaly episode confirmed or false_positive",
        description="EPISODE_ID is an episode event's episode_id (alert_mode=episodes) or an anomaly "
        "event's anomaly_id (alert_mode=every-update, seed models). "
        "Exit status: 0 published, 1 broker unreachable, 2 usage.",
    )
    fb.add_argument(
        "episode_id",
        metavar="EPISODE_ID",
        help=f"the event's episode_id (or anomaly_id with every-update): {EPISODE_ID_HEX_CHARS} hex digits",
    )
    fb.add_argument("label", choices=[label.value for label in FeedbackLabel], help="what the analyst found")
    fb.add_argument("--note", default=None, help="free text kept with the label")
    # `--suppress-for -5d` must reach the duration check, not stop at argparse's "expected one argument"
    fb._negative_number_matcher = re.compile(r"^-([0-9.]|inf|nan)", re.IGNORECASE)
    fb.add_argument(
        "--suppress-for",
        default=None,
        metavar="DURATION",
        help="false_positive only: no new episode for the item (and --reason) for this long (90s, 1h, 7d)",
    )
    fb.add_argument("--model-version", default=None, help="the model that raised it (else looked up)")
    fb.add_argument("--item", dest="item_id", default=None, help="the item id (else looked up)")
    fb.add_argument("--reason", default=None, help="limit a suppression to reasons starting with this")
    fb.set_defaults(handler=cmd_feedback)


def cmd_feedback(args: argparse.Namespace, settings: Settings) -> int:
    """Build, publish (acks=all) and print one feedback message."""
    try:
        check_event_id(args.episode_id)
        message = build_feedback(
            args.episode_id,
            args.label,
            who=f"{getpass.getuser()}@{socket.gethostname()}",
            note=args.note,
            suppress_for_s=_suppress_for(args.suppress_for),
            model_version=args.model_version,
            item_id=args.item_id,
            reason=args.reason,
        )
    except FeedbackError as exc:
        print(f"stockwatch feedback: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from consumer.adapters.kafka import JsonPublisher, ensure_worker_topics, existing_topics

    kafka = settings.kafka
    # A quiet probe bounded by kafka_bootstrap_timeout_s, as `consume` does: the clients below would
    # retry a refused login for 30 s. KafkaUnavailableError reaches main: one line naming the SASL settings.
    if kafka.topics.feedback not in existing_topics(kafka, timeout_s=kafka.bootstrap_timeout_s):
        ensure_worker_topics(
            kafka, [kafka.topics.feedback], replication_factor=kafka.topics.replication_factor
        )
    publisher = JsonPublisher(kafka, client_id="stockwatch-feedback")  # with its security settings
    try:
        publisher.publish(kafka.topics.feedback, [message], key_field="episode_id")
    finally:
        publisher.close()
    print(orjson.dumps(message).decode(), flush=True)
    if message.get("suppress_for_s"):
        _warn_if_suppression_is_moot(args, settings)
    return EXIT_OK


def _suppress_for(text: str | None) -> float:
    """``--suppress-for`` in seconds (0 is a value: it lifts a suppression); FeedbackError names the flag."""
    if text is None:
        return 0
    try:
        seconds = parse_duration(text)
    except FeedbackError as exc:
        raise FeedbackError(f"--suppress-for: {exc}") from None
    if seconds > MAX_SUPPRESS_S:
        raise FeedbackError(f"--suppress-for: the duration {text!r} must be at most 366d")
    return seconds


def check_event_id(text: str) -> None:
    """FeedbackError (one line) unless ``text`` has the form of the ids StockWatch's events carry."""
    from consumer.wire.events import ANOMALY_ID_HEX_CHARS  # numpy and detection: only when needed

    lengths = sorted({EPISODE_ID_HEX_CHARS, ANOMALY_ID_HEX_CHARS})  # both sha256 prefixes, lowercase hex
    if len(text) not in lengths or text.strip("0123456789abcdef"):
        shown = text if len(text) <= 40 else f"{text[:40]}..."
        digits = " or ".join(map(str, lengths))
        raise FeedbackError(
            f"EPISODE_ID must be an event's episode_id or anomaly_id: {digits} lowercase hex digits "
            f"(0-9a-f), got {shown!r}"
        )


def _warn_if_suppression_is_moot(args: argparse.Namespace, settings: Settings) -> None:
    """Say so when the settings make the asked-for suppression a no-op (the message is sent anyway)."""
    scoring = settings.scoring
    if not args.item_id and not scoring.audit_anomalies:
        print("stockwatch feedback: warning: audit_anomalies is off, so the worker cannot look up this "
              "episode's item: pass --item ITEM_ID (the event's item_id), or no suppression is stored",
              file=sys.stderr)  # fmt: skip
    if scoring.alert_mode == "every-update":
        print("stockwatch feedback: warning: suppressions hold back new episodes; with "
              "alert_mode=every-update consume publishes every anomalous update", file=sys.stderr)  # fmt: skip


FEEDBACK_TIMEOUT_MS = 1500  # `models show` must answer quickly without Mongo


def feedback_counts(settings: Settings, version: str) -> dict[str, Any] | None:
    """The registry's feedback counts of ``version`` (None when Mongo is unreachable or has none)."""
    from consumer.adapters.mongo import MongoUnavailableError, WorkerMongo

    mongo = settings.mongo
    try:
        db = WorkerMongo(mongo.uri, mongo.db, inventory=mongo.collection, timeout_ms=FEEDBACK_TIMEOUT_MS)
    except Exception:  # a malformed URI: the counts are optional, the metadata is the answer
        log.info("models show: no feedback counts (Mongo URI unusable)")
        return None
    try:
        return db.registry_feedback(version)
    except MongoUnavailableError as exc:
        log.info("models show: no feedback counts: %s", exc)
        return None
    finally:
        db.close()
