"""Suppressions: which events they silence, until when, and their stored form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumer.wire.suppressions import (
    Suppression,
    active,
    matching,
    reason_matches,
    suppression_from_feedback,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
STOCK = "stock 50,000 is 250x its max level 200 (usually 20%-80% of the way from min to max)"
VALUE = "stock value $500,000 is 400x the typical value (usual $200-$2,000)"


def test_a_suppression_from_feedback_lasts_its_window() -> None:
    s = suppression_from_feedback(episode_id="ep", item_id="SKU-1", suppress_for_s=3600, when=T0)
    assert s.expires_at == T0 + timedelta(hours=1)
    assert s.is_active(T0 + timedelta(minutes=59)) and not s.is_active(T0 + timedelta(hours=1))


@pytest.mark.parametrize(
    ("wanted", "reasons", "hit"),
    [
        (None, [STOCK], True),
        ("", [], True),
        ("stock", [STOCK], True),
        ("STOCK", [VALUE], True),  # word boundary after "stock": "stock value" starts with it
        ("stock value", [STOCK], False),
        ("stock value", [STOCK, VALUE], True),
        ("price", ["prices rose"], False),  # not a word boundary
        ("price", [STOCK], False),
        ("min_gt_max", ["min_gt_max"], True),  # a rule name
    ],
)
def test_reason_matching(wanted: str | None, reasons: list[str], hit: bool) -> None:
    assert reason_matches(wanted, reasons) is hit


def test_matching_needs_the_same_item_an_active_window_and_the_reason() -> None:
    sups = [
        Suppression("SKU-1", T0 + timedelta(hours=1), reason="stock value", episode_id="a"),
        Suppression("SKU-2", T0 - timedelta(seconds=1), episode_id="b"),  # expired
    ]
    assert matching(sups, item_id="SKU-1", reasons=[VALUE], now=T0) is sups[0]
    assert matching(sups, item_id="SKU-1", reasons=[STOCK], now=T0) is None
    assert matching(sups, item_id="SKU-2", reasons=[STOCK], now=T0) is None
    assert matching(sups, item_id="SKU-1", reasons=[VALUE], now=T0 + timedelta(hours=2)) is None
    assert active(sups, T0) == [sups[0]]


def test_documents_round_trip() -> None:
    s = suppression_from_feedback(
        episode_id="ep", item_id="SKU-1", suppress_for_s=60, when=T0, reason="stock", who="a@b", note="n"
    )
    assert Suppression.from_doc(s.as_doc()) == s
    naive = s.as_doc() | {"expires_at": "2026-12-01T13:00:00"}  # a naive time is read as UTC
    assert Suppression.from_doc(naive).expires_at == T0 + timedelta(hours=1)
