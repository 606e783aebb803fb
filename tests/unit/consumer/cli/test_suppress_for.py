"""`stockwatch feedback --suppress-for` refuses a negative or too long duration in one line naming the
flag, before any broker is asked (the bootstrap is a closed port: exit 1 without the check)."""

from __future__ import annotations

import pytest

from consumer.cli import main
from consumer.cli.feedback import _suppress_for

ID = "0123456789abcdef0123456789abcdef"
LIKE = " (like 90s, 15m, 1h, 7d, 2w)"


@pytest.fixture(autouse=True)
def _hermetic_settings(no_broker: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKWATCH_KAFKA_BOOTSTRAP_TIMEOUT_S", "1")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--suppress-for", "-5d"], f"the duration '-5d' must not be negative{LIKE}"),  # not argparse's
        (["--suppress-for=-5d"], f"the duration '-5d' must not be negative{LIKE}"),  # "expected one argument"
        (["--suppress-for", "-1.5h"], f"the duration '-1.5h' must not be negative{LIKE}"),
        (["--suppress-for", "-90"], f"the duration '-90' must not be negative{LIKE}"),
        (["--suppress-for", "400d"], "the duration '400d' must be at most 366d"),  # not "suppress_for_s: ..."
        (["--suppress-for", "5x"], f"cannot read the duration '5x'{LIKE}"),
        (["--suppress-for", "-1e9"], f"cannot read the duration '-1e9'{LIKE}"),  # argparse's usage before
        (["--suppress-for", "-inf"], f"cannot read the duration '-inf'{LIKE}"),
    ],
)
def test_a_negative_or_too_long_duration_is_one_line_naming_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    assert main(["feedback", ID, "false_positive", *argv]) == 2
    assert capsys.readouterr().err == f"stockwatch feedback: --suppress-for: {says}\n"


def test_zero_stays_a_value_and_durations_are_seconds() -> None:
    """README: relabelling with `--suppress-for 0` lifts a suppression."""
    given = ["0", "0s", "90", "15m", "1.5h", "7d", "2w", "366d"]
    assert [_suppress_for(t) for t in given] == [0, 0, 90, 900, 5400, 604_800, 1_209_600, 366 * 86_400]
    assert _suppress_for(None) == 0
