"""The optional confluent-kafka (librdkafka) transport of `stockwatch consume`.

Selected with ``STOCKWATCH_KAFKA_CLIENT=confluent-kafka`` (``pip install 'stockwatch[confluent]'``);
kafka-python (:mod:`consumer.adapters.kafka`) stays the default. It implements the same ports
(:class:`consumer.ports.Source` and :class:`consumer.ports.Sink`) with the same delivery rules:

* :mod:`.source` — :class:`ConfluentSource`, a group member with explicit offset commits;
* :mod:`.sinks` — :class:`ConfluentAtLeastOnceSink` (idempotent producer, offsets committed by the
  loop once every output is acknowledged) and :class:`ConfluentTransactionalSink` (outputs and
  consumed offsets in one transaction).

Only the hot path moves to librdkafka: model announcements, topic creation and the retrain
worker keep using kafka-python. Why it exists: kafka-python decodes every record in Python, which
is most of the cost of reading a topic (see README § Benchmarks); librdkafka does it in C.
"""

from __future__ import annotations

from consumer.adapters.confluent.records import ConfluentRecord
from consumer.adapters.confluent.sinks import (
    ConfluentAtLeastOnceSink,
    ConfluentTransactionalSink,
    make_confluent_sink,
)
from consumer.adapters.confluent.source import ConfluentSource

__all__ = [
    "ConfluentAtLeastOnceSink",
    "ConfluentRecord",
    "ConfluentSource",
    "ConfluentTransactionalSink",
    "make_confluent_sink",
]
