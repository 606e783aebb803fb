"""Minimum strength of the HMAC keys (``control_key``, ``model_signing_key``), checked at start-up."""

from __future__ import annotations

from pydantic import SecretStr

__all__ = [
    "MIN_KEY_BYTES",
    "SECRET_FIELDS",
    "check_key",
]

MIN_KEY_BYTES = 32  # HMAC-SHA256's output size: a shorter key is the weak link


def check_key(name: str, value: SecretStr | None) -> SecretStr | None:
    """``value`` unchanged, or ``ValueError`` saying why (never the key) when it is too short; the
    caller's message names where it was written (the variable or the file's key)."""
    if value is None:
        return None
    size = len(value.get_secret_value().encode())
    if size < MIN_KEY_BYTES:
        what = "set but empty" if size == 0 else f"only {size} byte{'s' * (size != 1)} long"
        raise ValueError(
            f"the {name.replace('_', ' ')} is {what}; keys need at least {MIN_KEY_BYTES} bytes "
            "(make one with `stockwatch keygen`)"
        )
    return value


SECRET_FIELDS = frozenset(
    {
        "control_key",
        "model_signing_key",
        "mongo_uri",
        "kafka_sasl_password",
        "kafka_client_properties",
        "notify_webhook",
    }
)
"""Never printed as written: SecretStr keys and passwords, the Mongo URI's password, the
password-like client properties, and the webhook URL (its token)."""
