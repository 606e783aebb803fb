"""The only package that imports kafka-python; one module per concern.

* :mod:`.source` — :class:`KafkaSource`, the input side of `stockwatch consume` (a group member,
  explicit offset commits, pause/seek for "no model yet" and rewinds);
* :mod:`.sinks` — the two delivery modes: :class:`AtLeastOnceSink` (idempotent producer; the loop
  commits a batch's offsets only after every output of that batch and of every earlier batch was
  acknowledged) and :class:`TransactionalSink` (outputs and consumed offsets in one transaction,
  ``send_offsets_to_transaction``);
* :mod:`.fast_send` — the sinks' outputs appended straight to the producer's record accumulator
  (``send``'s per-record checks skipped where they cannot fail), one I/O-thread wakeup per publish;
* :mod:`.changelog` — :class:`KafkaChangelog`, the topic behind the per-item state (read, truncated)
  (created with the input's partition count, read back on assignment);
* :mod:`.status` — :class:`StatusListener` (``model_published`` announcements) and topic creation;
* :mod:`.worker` — the retrain worker's and ``stockwatch ctl``'s publisher, control source and
  status reader;
* :mod:`.tools` — the demo's raw producer and topic reader;
* :mod:`.bounded_codecs` — the cap on how far one compressed record batch inflates
  (``max_decompressed_batch_bytes``): a decompression bomb is skipped unread, never allocated.
"""

from __future__ import annotations

from consumer.adapters.kafka.changelog import ChangelogPartitions, KafkaChangelog, ensure_changelog
from consumer.adapters.kafka.control import (
    ControlSource,
    GroupFeed,
    JsonPublisher,
    StatusTail,
    ensure_worker_topics,
)
from consumer.adapters.kafka.sinks import AtLeastOnceSink, PendingDelivery, TransactionalSink, make_sink
from consumer.adapters.kafka.source import DeliveryFailedError, KafkaSource, OffsetCommitError
from consumer.adapters.kafka.tools import TopicTail, publish_raw
from consumer.adapters.kafka.topics import StatusListener, ensure_topics, existing_topics, quiet_kafka_logs

__all__ = [
    "AtLeastOnceSink",
    "ChangelogPartitions",
    "ControlSource",
    "DeliveryFailedError",
    "GroupFeed",
    "JsonPublisher",
    "KafkaChangelog",
    "KafkaSource",
    "OffsetCommitError",
    "PendingDelivery",
    "StatusListener",
    "StatusTail",
    "TopicTail",
    "TransactionalSink",
    "ensure_changelog",
    "ensure_topics",
    "ensure_worker_topics",
    "existing_topics",
    "make_sink",
    "publish_raw",
    "quiet_kafka_logs",
]
