"""What the model store raises and lists (importable without the store's dependencies)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["ModelNotFoundError", "ModelVerificationError", "VersionInfo"]


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
