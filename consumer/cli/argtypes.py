"""argparse types shared by the commands: each refuses what no command can use, as a usage error (exit 2)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

__all__ = ["auto_or", "finite_float", "int_or_float", "positive_int", "seconds"]


def seconds(text: str) -> float:
    """A finite number of seconds above zero (``0``, ``-1``, ``nan``, ``inf`` and ``1e309`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds above 0")
    return value


def positive_int(text: str) -> int:
    """A whole number above zero, at most ``sys.maxsize`` (what a count or a slice can take)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    if value > sys.maxsize:
        raise argparse.ArgumentTypeError(f"{text!r} must be at most {sys.maxsize}")
    return value


def finite_float(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be finite")
    return value


def auto_or(convert: Any) -> Any:
    """argparse type: the literal ``auto`` or ``convert(text)``."""

    def parse(text: str) -> Any:
        return "auto" if text == "auto" else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def int_or_float(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)
