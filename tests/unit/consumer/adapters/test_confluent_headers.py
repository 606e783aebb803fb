"""librdkafka reads a record whose header key is not UTF-8, but ``Message.headers()`` raises
(SystemError, seen with confluent-kafka 2.16): the record is handled as one without headers."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from consumer.adapters.confluent.records import ConfluentRecord


class Message:
    """The accessors ConfluentRecord reads, with the headers librdkafka gives (or fails to)."""

    def __init__(self, headers: Any) -> None:
        self._headers = headers

    def value(self) -> bytes:
        return b"{not json"

    def topic(self) -> str:
        return "in"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7

    def headers(self) -> Any:
        if isinstance(self._headers, BaseException):
            raise self._headers
        return self._headers


def test_headers_librdkafka_cannot_decode_are_read_as_none_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = SystemError("<method 'headers'> returned a result with an exception set")
    error.__cause__ = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    with caplog.at_level(logging.WARNING):
        assert ConfluentRecord(Message(error)).headers is None  # type: ignore[arg-type]
    assert "in[0]@7: its headers cannot be read" in caplog.text


def test_readable_headers_are_given_as_they_are() -> None:
    assert ConfluentRecord(Message([("trace", b"1")])).headers == [("trace", b"1")]  # type: ignore[arg-type]
