"""Readiness probe for the local stack: succeeds once a real client call answers.

Kafka: a kafka-python admin client lists topics (the broker has joined its KRaft quorum).
Kafka SASL_SSL: the same through the second listener, with the settings of its ``client.env``.
Mongo: pymongo runs ``ping`` and a write (FerretDB's SQLite backend is usable).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any


def sasl_client_config(env_file: str) -> dict[str, Any]:
    """kafka-python's keywords for the SASL_SSL listener, from the stack's ``client.env``."""
    with open(env_file, encoding="utf-8") as handle:
        env = dict(line.strip().split("=", 1) for line in handle if "=" in line)
    return {
        "bootstrap_servers": env["STOCKWATCH_KAFKA_BOOTSTRAP"],
        "security_protocol": env["STOCKWATCH_KAFKA_SECURITY_PROTOCOL"],
        "sasl_mechanism": env["STOCKWATCH_KAFKA_SASL_MECHANISM"],
        "sasl_plain_username": env["STOCKWATCH_KAFKA_SASL_USERNAME"],
        "sasl_plain_password": env["STOCKWATCH_KAFKA_SASL_PASSWORD"],
        "ssl_cafile": env["STOCKWATCH_KAFKA_SSL_CAFILE"],
    }


def kafka_ready(**config: Any) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(request_timeout_ms=5000, **config)
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
    parser.add_argument("service", choices=["kafka", "kafka-sasl", "mongo"])
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument("--mongo", default="mongodb://127.0.0.1:27017")
    parser.add_argument("--sasl-env", default=".stack/kafka-sasl/client.env")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # kafka-python logs every refused connection

    deadline = time.monotonic() + args.timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if args.service == "kafka":
                kafka_ready(bootstrap_servers=args.kafka)
            elif args.service == "kafka-sasl":
                kafka_ready(**sasl_client_config(args.sasl_env))
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
