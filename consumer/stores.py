"""The model store the services open, built from the settings in one place (key, retention, policy)."""

from __future__ import annotations

from pathlib import Path

from config.settings import Settings
from detection import ModelStore

__all__ = ["store_from_settings"]


def store_from_settings(settings: Settings, model_dir: Path | None = None) -> ModelStore:
    """``ModelStore`` at ``model_dir`` (default ``model_dir`` of the settings) with their signing key.

    Raises ``ValueError`` when ``STOCKWATCH_MODEL_SIGNING_KEY`` is set but empty: an empty key would
    sign nothing worth trusting, and silently running unsigned is worse than refusing to start.
    """
    models = settings.models
    key = models.signing_key
    if key is not None and not key.get_secret_value():
        raise ValueError(
            "model_signing_key (STOCKWATCH_MODEL_SIGNING_KEY) is set but empty; unset it or set a key"
        )
    return ModelStore(
        model_dir or models.dir,
        signing_key=key.get_secret_value().encode() if key is not None else None,
        keep=models.keep,
        allow_sklearn_mismatch=models.allow_sklearn_mismatch,
    )
