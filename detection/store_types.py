"""What the model store raises and lists (importable without the store's dependencies)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

__all__ = [
    "VERSION_EXAMPLE",
    "VERSION_RE",
    "ModelNotFoundError",
    "ModelVerificationError",
    "VersionInfo",
    "check_version_id",
]

VERSION_RE: Final = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}\Z")  # \Z: `$` also matches before a final newline
"""A version id: the UTC publish time and 8 random hex digits."""
VERSION_EXAMPLE: Final = "20261125T180102Z-1a2b3c4d"


class ModelVerificationError(ValueError):
    """A model's files, signature or scikit-learn version did not pass verification."""


class ModelNotFoundError(LookupError):
    """No model has been published yet, or the requested version does not exist."""


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One stored version as listed by :meth:`ModelStore.versions` (read without unpickling)."""

    version: str
    created_at: datetime | None
    n_samples: int | None
    threshold: float | None
    is_current: bool
    signed: bool
    error: str | None = None
    detector: str | None = None  # "seed" or "default" (None when unreadable)


def check_version_id(version: str) -> str:
    """``version`` when it is shaped like a version id (so it cannot name a path outside the store)."""
    if not VERSION_RE.match(version):
        raise ModelNotFoundError(f"{version!r} is not a version id (like {VERSION_EXAMPLE})")
    return version
