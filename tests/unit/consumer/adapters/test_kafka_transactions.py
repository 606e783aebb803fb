"""Bounded transactional calls and producer replacement of the kafka-python exactly-once sink.

A fake producer stands in for kafka-python's (its transaction manager hands out request results
the test completes, or never does); no broker.
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from kafka.future import Future

from config.settings import Settings
from consumer.adapters.kafka import DeliveryFailedError
from consumer.adapters.kafka import sinks as sinks_module
from consumer.adapters.kafka.sinks import TransactionalSink
from consumer.adapters.kafka.transactions import Deadlines, TransactionStuckError
from consumer.ports import OutputRecord


def failure(delivery: Any) -> DeliveryFailedError:
    """The error a publish's handle reports (the transaction ended inside publish)."""
    assert delivery.done()
    error = delivery.error()
    assert isinstance(error, DeliveryFailedError), error
    return error


class Result:
    """kafka-python's TransactionalRequestResult: a latch and an error."""

    def __init__(self, error: BaseException | None = None, *, done: bool = True) -> None:
        self.latch = threading.Event()
        self.error = error
        if done:
            self.latch.set()

    def wait(self, timeout_ms: float | None = None) -> bool:
        ok = self.latch.wait(None if timeout_ms is None else timeout_ms / 1000)
        if ok and self.error is not None:
            raise self.error
        return ok


class Sender:
    def __init__(self) -> None:
        self.wakeups = 0
        self.forced = False
        self.on_wakeup: Any = None

    def wakeup(self) -> None:
        self.wakeups += 1
        if self.on_wakeup is not None:
            self.on_wakeup(self.wakeups)

    def force_close(self) -> None:
        self.forced = True

    def join(self, timeout: float | None = None) -> None: ...


class Manager:
    def __init__(self, commit: Result) -> None:
        self.commit = commit
        self.sent: list[Any] = []  # the offsets of each send_offsets_to_transaction
        self.commits = self.aborts = 0

    def send_offsets_to_transaction(self, offsets: Any, group_metadata: Any) -> Result:
        self.sent.append(offsets)
        return Result()

    def begin_commit(self) -> Result:
        self.commits += 1
        return self.commit

    def begin_abort(self) -> Result:
        self.aborts += 1
        return Result()


class FakeProducer:
    """What the sink uses of kafka-python's KafkaProducer; ``plan`` says how each instance behaves."""

    DEFAULT_CONFIG = KafkaProducer.DEFAULT_CONFIG  # the keywords the sink's config is filtered by
    made: ClassVar[list[FakeProducer]] = []
    plan: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **config: Any) -> None:
        how = self.plan.pop(0) if self.plan else {}
        self.config = config
        self.init_error: BaseException | None = how.get("init_error")
        self.send_error: BaseException | None = how.get("send_error")
        self._transaction_manager = Manager(how.get("commit", Result()))
        self._sender = Sender()
        self.closed = False
        self.made.append(self)

    def init_transactions(self) -> None:
        if self.init_error is not None:
            raise self.init_error

    def begin_transaction(self) -> None:
        self.begun = getattr(self, "begun", 0) + 1

    def send(self, topic: str, **kw: Any) -> Future:
        future = Future()
        return future.failure(self.send_error) if self.send_error is not None else future.success(None)

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class Member:
    def group_metadata(self) -> str:
        return "group"


@pytest.fixture
def producers(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    FakeProducer.made, FakeProducer.plan = [], []
    monkeypatch.setattr(sinks_module, "KafkaProducer", FakeProducer)
    return FakeProducer


def sink(deadlines: Deadlines | None = None, interval_s: float = 0.0) -> TransactionalSink:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", delivery="exactly-once", transactional_id="tx-test")
    return TransactionalSink(settings.kafka, deadlines, interval_s=interval_s)


OUT = [OutputRecord("out", b"k", b"v", [])]
OFFSETS = {("in", 0): 5}


def test_a_wait_wakes_the_io_thread_until_the_request_completes() -> None:
    result, sender = Result(done=False), Sender()
    sender.on_wakeup = lambda n: result.latch.set() if n >= 4 else None  # only a later wakeup ends it
    producer = FakeProducer.__new__(FakeProducer)
    producer._sender, producer._transaction_manager = sender, Manager(result)
    Deadlines(call_timeout_s=10).commit(producer)
    assert sender.wakeups >= 4


def test_a_request_that_never_completes_gives_up_at_the_deadline() -> None:
    producer = FakeProducer.__new__(FakeProducer)
    producer._sender, producer._transaction_manager = Sender(), Manager(Result(done=False))
    with pytest.raises(TransactionStuckError, match="commit_transaction did not finish"):
        Deadlines(call_timeout_s=0.2).commit(producer)


def test_a_stop_request_cuts_a_wedged_wait_short() -> None:
    producer = FakeProducer.__new__(FakeProducer)
    producer._sender, producer._transaction_manager = Sender(), Manager(Result(done=False))
    deadlines = Deadlines(call_timeout_s=600, stop_grace_s=0.2)
    threading.Timer(0.1, deadlines.interrupt).start()
    started = time.monotonic()
    with pytest.raises(TransactionStuckError, match="stopping"):
        deadlines.commit(producer)
    assert time.monotonic() - started < 60  # far under the 600 s call timeout


def test_a_failed_request_raises_its_error() -> None:
    producer = FakeProducer.__new__(FakeProducer)
    producer._sender, producer._transaction_manager = (
        Sender(),
        Manager(Result(MessageSizeTooLargeError(None))),
    )
    with pytest.raises(MessageSizeTooLargeError):
        Deadlines().commit(producer)


def test_a_producer_without_the_internals_is_refused_clearly() -> None:
    with pytest.raises(TransactionStuckError, match="no transaction manager"):
        Deadlines().commit(object())


def test_init_is_bounded_by_the_call_timeout(producers: type[FakeProducer]) -> None:
    sink(Deadlines(call_timeout_s=7))
    assert producers.made[0].config["max_block_ms"] == 7000


def test_a_wedged_commit_replaces_the_producer(producers: type[FakeProducer]) -> None:
    producers.plan = [{"commit": Result(done=False)}, {}]
    s = sink(Deadlines(call_timeout_s=0.2))
    error = failure(s.publish(OUT, OFFSETS, Member()))  # type: ignore[arg-type]
    assert "TransactionStuckError" in str(error)
    first, second = producers.made
    assert first._sender.forced and first.closed  # its I/O thread is stopped, not left spinning
    assert s._producer is second
    assert s.publish(OUT, OFFSETS, Member()).error() is None  # type: ignore[arg-type]  # the retry goes through the new one


def test_a_refused_record_replaces_the_producer_and_is_reported(producers: type[FakeProducer]) -> None:
    refusal = MessageSizeTooLargeError(None)
    producers.plan = [{"commit": Result(refusal), "send_error": refusal}, {}]
    s = sink()
    error = failure(s.publish(OUT, OFFSETS, Member()))  # type: ignore[arg-type]
    assert [f.kind for f in error.failures] == ["too_large"]
    assert len(producers.made) == 2 and producers.made[0].closed  # sequence numbers start afresh


def test_a_failed_replacement_is_retried_with_the_next_batch(producers: type[FakeProducer]) -> None:
    producers.plan = [{"commit": Result(KafkaTimeoutError())}, {"init_error": KafkaTimeoutError()}, {}]
    s = sink()
    failure(s.publish(OUT, OFFSETS, Member()))  # type: ignore[arg-type]
    assert s._producer is None and producers.made[1]._sender.forced  # the half-made one is stopped too
    assert s.publish(OUT, OFFSETS, Member()).error() is None  # type: ignore[arg-type]
    assert s._producer is producers.made[2]


def test_after_a_stop_request_a_failure_makes_no_new_producer(producers: type[FakeProducer]) -> None:
    producers.plan = [{"commit": Result(done=False)}]
    s = sink(Deadlines(call_timeout_s=600, stop_grace_s=0.1))
    s.interrupt()
    error = failure(s.publish(OUT, OFFSETS, Member()))  # type: ignore[arg-type]
    assert "stopping" in str(error)
    assert len(producers.made) == 1 and s._producer is None
    s.close()  # nothing left to close


def test_a_transaction_spans_the_batches_of_its_interval_and_commits_when_one_is_waited_for(
    producers: type[FakeProducer],
) -> None:
    s = sink(interval_s=600)
    first = s.publish(OUT, {("in", 0): 5}, Member())  # type: ignore[arg-type]
    second = s.publish(OUT, {("in", 0): 9, ("in", 1): 3}, Member())  # type: ignore[arg-type]
    producer = producers.made[0]
    manager = producer._transaction_manager
    assert not first.done() and not second.done() and manager.commits == 0
    first.wait()
    assert first.done() and second.done() and first.error() is None and second.error() is None
    assert manager.commits == 1 and len(manager.sent) == 1
    assert {(tp.topic, tp.partition): m.offset for tp, m in manager.sent[0].items()} == {
        ("in", 0): 9,
        ("in", 1): 3,
    }
    third = s.publish(OUT, {("in", 0): 12}, Member())  # type: ignore[arg-type]
    assert not third.done() and producer.begun == 2  # a new transaction


def test_a_refused_record_fails_every_batch_of_its_transaction_each_naming_its_own_outputs(
    producers: type[FakeProducer],
) -> None:
    producers.plan = [{}, {}]
    s = sink(interval_s=600)
    first = s.publish(OUT, {("in", 0): 5}, Member())  # type: ignore[arg-type]
    producers.made[0].send_error = MessageSizeTooLargeError(None)
    second = s.publish(OUT * 2, {("in", 0): 9}, Member())  # type: ignore[arg-type]
    assert first.done() and second.done()
    assert [f.kind for f in failure(second).failures] == ["too_large", "transient"]  # one refusal
    assert failure(first).failures == ()  # its outputs were not refused: it fails with its transaction
    assert producers.made[0].closed and producers.made[0]._transaction_manager.commits == 0


def test_discard_aborts_the_open_transaction_and_fails_its_batches(producers: type[FakeProducer]) -> None:
    s = sink(interval_s=600)
    delivery = s.publish(OUT, OFFSETS, Member())  # type: ignore[arg-type]
    assert s.discard() is True
    assert "dropped" in str(failure(delivery))
    assert producers.made[0]._transaction_manager.aborts == 1
    assert s.discard() is False  # nothing open any more
    assert not s.publish(OUT, OFFSETS, Member()).done()  # type: ignore[arg-type]  # a new one opens
