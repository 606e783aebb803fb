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

    def send_offsets_to_transaction(self, offsets: Any, group_metadata: Any) -> Result:
        return Result()

    def begin_commit(self) -> Result:
        return self.commit

    def begin_abort(self) -> Result:
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

    def begin_transaction(self) -> None: ...

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


def sink(deadlines: Deadlines | None = None) -> TransactionalSink:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", delivery="exactly-once", transactional_id="tx-test")
    return TransactionalSink(settings.kafka, deadlines)


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
    with pytest.raises(DeliveryFailedError, match="TransactionStuckError"):
        s.publish(OUT, OFFSETS, Member())  # type: ignore[arg-type]
    first, second = producers.made
    assert first._sender.forced and first.closed  # its I/O thread is stopped, not left spinning
    assert s._producer is second
    s.publish(OUT, OFFSETS, Member())  # type: ignore[arg-type]  # the retry goes through the new one


def test_a_refused_record_replaces_the_producer_and_is_reported(producers: type[FakeProducer]) -> None:
    refusal = MessageSizeTooLargeError(None)
    producers.plan = [{"commit": Result(refusal), "send_error": refusal}, {}]
    s = sink()
    with pytest.raises(DeliveryFailedError) as caught:
        s.publish(OUT, OFFSETS, Member())  # type: ignore[arg-type]
    assert [f.kind for f in caught.value.failures] == ["too_large"]
    assert len(producers.made) == 2 and producers.made[0].closed  # sequence numbers start afresh


def test_a_failed_replacement_is_retried_with_the_next_batch(producers: type[FakeProducer]) -> None:
    producers.plan = [{"commit": Result(KafkaTimeoutError())}, {"init_error": KafkaTimeoutError()}, {}]
    s = sink()
    with pytest.raises(DeliveryFailedError):
        s.publish(OUT, OFFSETS, Member())  # type: ignore[arg-type]
    assert s._producer is None and producers.made[1]._sender.forced  # the half-made one is stopped too
    s.publish(OUT, OFFSETS, Member())  # type: ignore[arg-type]
    assert s._producer is producers.made[2]


def test_after_a_stop_request_a_failure_makes_no_new_producer(producers: type[FakeProducer]) -> None:
    producers.plan = [{"commit": Result(done=False)}]
    s = sink(Deadlines(call_timeout_s=600, stop_grace_s=0.1))
    s.interrupt()
    with pytest.raises(DeliveryFailedError, match="stopping"):
        s.publish(OUT, OFFSETS, Member())  # type: ignore[arg-type]
    assert len(producers.made) == 1 and s._producer is None
    s.close()  # nothing left to close
