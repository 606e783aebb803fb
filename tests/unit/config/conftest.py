"""Every settings test starts from an environment without STOCKWATCH_* variables."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("STOCKWATCH_"):
            monkeypatch.delenv(key)
