"""The one error type of the settings: a list of user mistakes, each a single line without secrets."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = ["SettingsError", "did_you_mean"]


class SettingsError(Exception):
    """The settings can not be read; ``problems`` holds one line per mistake, naming where it was made."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
