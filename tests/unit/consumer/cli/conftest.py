"""Shared fixtures of the CLI's unit tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def no_broker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No STOCKWATCH_* variable of the caller's shell, an empty config file, a closed bootstrap port."""
    for name in list(os.environ):
        if name.startswith("STOCKWATCH_"):
            monkeypatch.delenv(name)
    (tmp_path / "empty.toml").touch()
    monkeypatch.setenv("STOCKWATCH_CONFIG", str(tmp_path / "empty.toml"))
    monkeypatch.setenv("STOCKWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:1")
