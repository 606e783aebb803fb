"""The pause before the scoring loop retries a failed delivery (pure; the loop's use: test_loop_bounded.py)."""

from __future__ import annotations

from consumer.scoring.retry_backoff import MAX_RETRY_BACKOFF_S, RetryBackoff


def test_the_pause_doubles_per_failure_in_a_row_up_to_the_cap() -> None:
    backoff = RetryBackoff()
    pauses = [backoff.failed(1.5, at_once=False) for _ in range(7)]
    assert pauses == [1.5, 3.0, 6.0, 12.0, 24.0, MAX_RETRY_BACKOFF_S, MAX_RETRY_BACKOFF_S]
    assert backoff.failures_in_row == backoff.waited_failures == 7


def test_retries_at_once_neither_wait_nor_lengthen_the_next_pause() -> None:
    backoff = RetryBackoff()
    assert [backoff.failed(0.2, at_once=True) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert backoff.failed(0.2, at_once=False) == 0.2
    assert (backoff.failures_in_row, backoff.waited_failures) == (4, 1)


def test_an_acknowledged_batch_starts_the_pauses_over() -> None:
    backoff = RetryBackoff()
    backoff.failed(1.0, at_once=False)
    backoff.failed(1.0, at_once=False)
    backoff.succeeded()
    assert backoff.failed(1.0, at_once=False) == 1.0


def test_a_refused_transaction_counts_as_a_failure_without_a_pause() -> None:
    backoff = RetryBackoff()
    backoff.refused()
    assert (backoff.failures_in_row, backoff.waited_failures) == (1, 0)
    assert backoff.failed(1.0, at_once=False) == 1.0


def test_a_huge_run_of_failures_stays_at_the_cap() -> None:
    backoff = RetryBackoff(failures_in_row=1000, waited_failures=1000)
    assert backoff.failed(1.0, at_once=False) == MAX_RETRY_BACKOFF_S
