"""A Mongo URI checked without I/O: a malformed one is a setting to fix, not an outage to retry."""

from __future__ import annotations

import re
import warnings
from typing import Any

from pymongo import MongoClient
from pymongo.errors import ConfigurationError

from consumer.ports import MongoUriError

__all__ = ["check_uri", "uri_problem"]

_SHORT = 4  # a secret this long or longer is masked wherever it appears


def uri_problem(uri: str) -> str | None:
    """Why pymongo refuses ``uri`` (no password in it), or None when it parses.

    ``connect=False`` defers every lookup (``mongodb+srv://`` DNS included) to the first
    operation, so only the text is judged here; an unreachable server is found later and retried.
    An option pymongo would ignore with a UserWarning (a bad value, an unknown name) is refused too:
    ignored, it changes how the service connects (e.g. which auth mechanism) without a word.
    A TLS file option (``tlsCAFile``, ``tlsCertificateKeyFile``) naming a missing, unreadable or
    malformed file raises an OSError (``ssl.SSLError`` included) while the client is built.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            client: MongoClient[dict[str, Any]] = MongoClient(uri, connect=False)
    except (ConfigurationError, ValueError, TypeError, UserWarning, OSError) as exc:
        return _without_secrets(str(exc), uri)
    client.close()
    return None


def check_uri(uri: str) -> None:
    """Raise :class:`MongoUriError` when pymongo refuses ``uri``."""
    problem = uri_problem(uri)
    if problem is not None:
        raise MongoUriError(problem)


def _without_secrets(reason: str, uri: str) -> str:
    """``reason`` with every piece of the URI's user-info (``user:password@``) masked."""
    after_scheme = uri.partition("://")[2] or uri  # `mongodb//u:p@h` has no "://" but a password
    userinfo = after_scheme.rpartition("@")[0] if "@" in uri else ""
    for secret in sorted({userinfo, *userinfo.split(":")[1:]}, key=len, reverse=True):
        if len(secret) >= _SHORT:
            reason = reason.replace(secret, "**********")
        elif secret:  # a short one only where it stands alone: `b` must not mask the b of "begin"
            reason = re.sub(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])", "**********", reason)
    return " ".join(reason.split())[:300]
