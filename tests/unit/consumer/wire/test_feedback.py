"""Feedback messages: what `stockwatch feedback` sends and what the worker accepts, per the schema."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.wire.feedback import (
    FeedbackError,
    FeedbackLabel,
    build_feedback,
    parse_duration,
    parse_feedback,
)
from tests.schemas import validate

NOW = datetime(2026, 12, 1, 22, 50, 40, 123000, tzinfo=UTC)


def test_a_built_message_validates_and_parses_back() -> None:
    msg = build_feedback(
        "a" * 32,
        "false_positive",
        who="ana@host",
        note="seasonal peak",
        suppress_for_s=3600,
        model_version="v1",
        item_id="SKU-1",
        reason="stock",
        now=NOW,
    )
    validate("feedback-message", msg)
    assert msg["when"] == "2026-12-01T22:50:40.123+00:00"
    back = parse_feedback(orjson.dumps(msg))
    assert (back.label, back.item_id, back.suppress_for_s, back.model_version) == (
        FeedbackLabel.FALSE_POSITIVE,
        "SKU-1",
        3600,
        "v1",
    )


def test_optional_fields_are_left_out_when_not_given() -> None:
    msg = build_feedback("ep-1", FeedbackLabel.CONFIRMED, who="ana@host", now=NOW)
    assert set(msg) == {"schema_version", "episode_id", "label", "who", "when", "suppress_for_s"}
    validate("feedback-message", msg)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"label": "maybe"}, "label"),
        ({"episode_id": ""}, "episode_id"),
        ({"label": "confirmed", "suppress_for_s": 60}, "false_positive"),
        ({"note": "x" * 2000}, "note"),
    ],
)
def test_invalid_arguments_give_one_line(kwargs: dict[str, object], needle: str) -> None:
    args: dict[str, object] = {"episode_id": "ep", "label": "false_positive"} | kwargs
    episode, label = args.pop("episode_id"), args.pop("label")
    with pytest.raises(FeedbackError) as info:
        build_feedback(str(episode), str(label), who="a@b", **args)  # type: ignore[arg-type]
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604_800), ("2w", 1_209_600), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "1y", "1 hour", "1e3s"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(FeedbackError):
        parse_duration(text)


def test_a_negative_duration_says_so() -> None:
    with pytest.raises(FeedbackError, match=r"^the duration '-5d' must not be negative"):
        parse_duration("-5d")


@given(st.binary(max_size=300))
def test_parse_never_raises_anything_but_feedback_error(raw: bytes) -> None:
    try:
        parse_feedback(raw)
    except FeedbackError as exc:
        assert "\n" not in str(exc)
