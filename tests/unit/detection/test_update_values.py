"""What the change detector's parser takes as a number, a time and an id (attack review of issue 11):
native dates (MongoDB's), epoch seconds as text, and no Python-only number spellings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from detection import parse_updates

FULL = {"item_id": "a", "stock_quantity": 5, "min_stock_level": 1, "max_stock_level": 9, "price": 2.5}
MARCH = datetime(2026, 3, 1, tzinfo=UTC).timestamp()


def one(**fields: Any) -> tuple[Any, list[tuple[int, str]]]:
    batch, rejects = parse_updates([FULL | fields])
    return batch, rejects


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 3, 1),  # pymongo's default: naive, in UTC
        datetime(2026, 3, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        str(int(MARCH)),
        f" {MARCH:.1f} ",
        "2026-03-01T00:00:00Z",
        "20260301",  # an ISO basic date, not epoch seconds
    ],
)
def test_occurred_at_as_a_date_or_epoch_text_is_the_same_time(value: Any) -> None:
    batch, rejects = one(occurred_at=value)
    assert rejects == [] and batch.occurred_at.tolist() == [MARCH]


@pytest.mark.parametrize("value", ["1_000", "١٢", "nan", "Infinity", "0x10", "12 units"])
def test_numbers_as_text_are_plain_ascii_decimals_only(value: str) -> None:
    batch, rejects = one(stock_quantity=value)
    assert len(batch) == 0 and rejects == [(0, f"stock_quantity: must be a number, got {value!r}")]


@pytest.mark.parametrize(
    ("value", "expected"), [("12", 12.0), (" -3.5 ", -3.5), ("1e3", 1000.0), (".5", 0.5)]
)
def test_numbers_as_text_are_still_read(value: str, expected: float) -> None:
    batch, rejects = one(stock_quantity=value)
    assert rejects == [] and batch.stock.tolist() == [expected]


def test_an_id_too_long_says_so() -> None:
    batch, rejects = one(item_id="x" * 300)
    assert len(batch) == 0 and rejects == [(0, "item_id: at most 256 characters, got 300")]
