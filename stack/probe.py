"""Readiness probe for the local stack: succeeds once a real client call answers.

Kafka: a kafka-python admin client lists topics (the broker has joined its KRaft quorum).
Mongo: pymongo runs ``ping`` and a write (FerretDB's SQLite backend is usable).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time


def kafka_ready(bootstrap: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        admin.list_topics()
        admin.describe_cluster()
    finally:
        admin.close()


def mongo_ready(uri: str) -> None:
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=2000)
    try:
        client.admin.command("ping")
        client["stockwatch_probe"]["probe"].replace_one({"_id": 1}, {"_id": 1, "t": time.time()}, upsert=True)
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", choices=["kafka", "mongo"])
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument("--mongo", default="mongodb://127.0.0.1:27017")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # kafka-python logs every refused connection

    deadline = time.monotonic() + args.timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if args.service == "kafka":
                kafka_ready(args.kafka)
            else:
                mongo_ready(args.mongo)
            return 0
        except Exception as exc:  # any failure means "not ready yet"; the last one is reported
            last = exc
            time.sleep(0.5)
    print(f"{args.service} not ready after {args.timeout:.0f}s: {last!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
