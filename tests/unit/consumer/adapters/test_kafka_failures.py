"""Which output a failed kafka-python delivery refused (pure: futures completed by hand, no broker).

kafka-python's idempotent producer takes a record refused as too large as a fatal error and fails
every other record in flight with the same exception object: only the first one failed with it
is the record refused, the others are collateral (transient).
"""

from __future__ import annotations

from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from kafka.future import Future

from consumer.adapters.kafka.send_outputs import FirstFailures, send_all
from consumer.ports import OutputRecord


def test_only_the_first_record_failed_with_a_shared_exception_is_refused() -> None:
    first = FirstFailures()
    a = [first.watch(Future()) for _ in range(3)]  # one delivery
    b = [first.watch(Future()) for _ in range(2)]  # a later one, in flight at the same time
    fatal = MessageSizeTooLargeError(None)
    a[0].success(None)
    b[1].failure(fatal)  # the refused record (the broker's answer comes first)
    for f in (a[1], a[2], b[0]):
        f.failure(fatal)  # the producer aborts everything else in flight with the same object
    assert [(f.index, f.kind) for f in first.failures(a)] == [(1, "transient"), (2, "transient")]
    assert [(f.index, f.kind) for f in first.failures(b)] == [(0, "transient"), (1, "too_large")]


def test_separate_refusals_and_transient_errors() -> None:
    first = FirstFailures()
    futures = [first.watch(Future()) for _ in range(3)]
    futures[0].failure(MessageSizeTooLargeError(None))
    futures[1].failure(MessageSizeTooLargeError(None))  # its own refusal (e.g. over max_request_size)
    futures[2].failure(KafkaTimeoutError())
    kinds = [f.kind for f in first.failures(futures)]
    assert kinds == ["too_large", "too_large", "transient"]
    late = first.watch(Future().failure(MessageSizeTooLargeError(None)))  # failed before it is watched
    assert [f.kind for f in first.failures([late])] == ["too_large"]


class _RefusingProducer:
    """A transactional producer whose first record the broker refuses while the batch is still being
    enqueued: kafka-python's ``send`` then raises for every later record."""

    def __init__(self) -> None:
        self.sent: list[Future] = []

    def send(self, topic: str, **_: object) -> Future:
        if self.sent:
            raise KafkaError(
                "Cannot perform send because at least one previous transactional request has failed"
            )
        self.sent.append(Future())
        self.sent[0].failure(MessageSizeTooLargeError(None))  # the broker's answer, before the next send
        return self.sent[0]


def test_a_send_refused_after_an_earlier_refusal_still_names_the_refused_record() -> None:
    # two gzip poisons in one transaction stalled exactly-once for ever: the raise lost the futures
    first = FirstFailures()
    outputs = [OutputRecord("dlq", b"k", b"v", [("dlq.source.offset", b"1")]) for _ in range(3)]
    futures = send_all(_RefusingProducer(), outputs, first)
    assert [(f.index, f.kind) for f in first.failures(futures)] == [(0, "too_large"), (1, "transient")]


class _RecordingProducer:
    """Records, in order, the topics registered with its sender and the sends."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._sender = self

    def add_topic(self, topic: str) -> None:
        self.calls.append(f"add {topic}")

    def send(self, topic: str, **_: object) -> Future:
        self.calls.append(f"send {topic}")
        return Future().success(None)


def test_every_new_output_topic_is_registered_before_the_first_send() -> None:
    # kafka-python waits for an unknown topic's metadata at its first send, one topic at a time,
    # retry_backoff_ms apart: the batch's second new topic (the state changelog) waited 100 ms
    producer = _RecordingProducer()
    batch = [
        OutputRecord("anomalies", b"k", b"v"),
        OutputRecord("state", b"k", b"v"),
        OutputRecord("anomalies", b"k", b"v"),
    ]
    send_all(producer, batch, FirstFailures())
    assert producer.calls == ["add anomalies", "add state", "send anomalies", "send state", "send anomalies"]
    producer.calls.clear()
    send_all(producer, [*batch, OutputRecord("dlq", b"k", b"v")], FirstFailures())
    assert producer.calls[0] == "add dlq"  # only the topic it has not seen
    assert producer.calls.count("add dlq") == 1 and not any(
        c in producer.calls for c in ("add anomalies", "add state")
    )
