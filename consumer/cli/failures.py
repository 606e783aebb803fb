"""What a user can cause, as one line on stderr and an exit status (never a traceback).

Exit statuses shared by every command (``ctl`` and ``score`` add their own, see their ``--help``):
0 success; 1 something outside the command is unavailable or missing (Kafka, Mongo, the HTTP
port, the model directory); 2 usage: a bad flag, setting or input, or a model that is refused.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config import Settings

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_STATUS_HELP",
    "EXIT_USAGE",
    "UserFacingError",
    "check_mongo_uri",
    "explain",
    "kafka_unreachable",
    "missing_model_dir",
    "mongo_message",
    "say",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a killed pipeline stage
EXIT_STATUS_HELP = (
    "Exit status: 0 success; 1 Kafka, Mongo, the HTTP port or the model directory is unavailable "
    "or missing; 2 usage (a bad flag, setting or input, or a refused model)."
)


class UserFacingError(Exception):
    """A failure the user caused or can fix: ``main`` prints it in one line and exits ``status``."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


def say(command: str, message: str) -> None:
    """One line on stderr: ``stockwatch <command>: <message>``."""
    print(f"stockwatch {command}: {message}", file=sys.stderr, flush=True)


def model_dir_origin(flag: Path | None) -> str:
    return "--model-dir" if flag is not None else "STOCKWATCH_MODEL_DIR"


def missing_model_dir(path: Path, flag: Path | None) -> UserFacingError | None:
    """An error when ``path`` (from ``--model-dir`` or the setting) is not a usable directory."""
    origin = model_dir_origin(flag)
    try:
        if not path.exists():
            return UserFacingError(f"model directory {path} ({origin}) does not exist")
        if not path.is_dir():
            return UserFacingError(f"model directory {path} ({origin}) is not a directory", EXIT_USAGE)
    except OSError as exc:
        return UserFacingError(f"model directory {path} ({origin}) cannot be read: {exc.strerror}")
    return None


# kafka-python's SaslAuthenticationFailedError; librdkafka's _AUTHENTICATION / "SASL authentication error"
_AUTH_REFUSED = (
    "SaslAuthenticationFailed",
    "_AUTHENTICATION",
    "SASL authentication error",
    "Authentication failed",
)


def kafka_unreachable(settings: Settings, exc: BaseException) -> str:
    """The message of a Kafka failure, naming the setting and the address (and the SASL user when
    SASL is configured: a broker that refuses credentials often just closes the connection)."""
    bootstrap, security = settings.kafka.bootstrap, settings.kafka.security
    reason = str(exc)
    if bootstrap in reason and "STOCKWATCH_KAFKA_BOOTSTRAP" in reason:
        message = reason
    else:
        message = f"Kafka at {bootstrap} (STOCKWATCH_KAFKA_BOOTSTRAP) is unavailable: {reason}"
    if not security.protocol.startswith("SASL_"):
        return message
    user = f"STOCKWATCH_KAFKA_SASL_USERNAME ({security.sasl_username}, {security.sasl_mechanism})"
    if any(marker in reason for marker in _AUTH_REFUSED):
        return (
            f"Kafka at {bootstrap} refused the SASL credentials of {user}: check the username and "
            "STOCKWATCH_KAFKA_SASL_PASSWORD"
        )
    return (
        f"{message}; with {security.protocol} authentication may have failed: Kafka closes the "
        f"connection when it refuses the SASL credentials of {user}, so check them and "
        "STOCKWATCH_KAFKA_SASL_PASSWORD too"
    )


def mongo_message(settings: Settings, exc: BaseException) -> str:
    """The message of a Mongo failure, naming the setting and the masked URI; no password in it."""
    mongo = settings.mongo
    reason = str(exc).replace(mongo.uri, mongo.safe_uri)
    _head, at, _tail = mongo.uri.rpartition("@")
    password = mongo.uri.partition("://")[2].rpartition("@")[0].partition(":")[2] if at else ""
    if password:
        reason = reason.replace(password, "**********")
    return f"Mongo at {mongo.safe_uri} (STOCKWATCH_MONGO_URI) is unavailable: {reason[:300]}"


def check_mongo_uri(settings: Settings) -> None:
    """UserFacingError (exit 2) at once when pymongo cannot parse ``STOCKWATCH_MONGO_URI``: a setting
    to fix, not a server to wait for. The message shows the URI masked and pymongo's reason."""
    from consumer.adapters.mongo import uri_problem  # pymongo: only for the commands that use Mongo

    problem = uri_problem(settings.mongo.uri)  # its text never holds the password
    if problem is not None:
        raise UserFacingError(
            f"STOCKWATCH_MONGO_URI ({settings.mongo.safe_uri}) is not a valid Mongo URI: {problem}",
            EXIT_USAGE,
        )


def explain(exc: BaseException, settings: Settings | None) -> tuple[str, int] | None:
    """The one-line message and exit status of an exception a user can cause; None for bugs."""
    from config import SettingsError
    from consumer.ports import KafkaUnavailableError, MongoUnavailableError
    from detection.store_types import ModelNotFoundError, ModelVerificationError

    if isinstance(exc, UserFacingError):
        return str(exc), exc.status
    if isinstance(exc, SettingsError):
        return "; ".join(exc.problems), EXIT_USAGE
    if isinstance(exc, KafkaUnavailableError):
        return (kafka_unreachable(settings, exc) if settings else str(exc)), EXIT_FAILED
    if isinstance(exc, MongoUnavailableError):
        return (mongo_message(settings, exc) if settings else str(exc)), EXIT_FAILED
    if isinstance(exc, ModelNotFoundError | ModelVerificationError):
        return str(exc), EXIT_USAGE
    refused = client_config_refusal(exc)
    return None if refused is None else (_without_secrets(refused, settings), EXIT_USAGE)


def client_config_refusal(exc: BaseException) -> str | None:
    """The message of a Kafka client that refused a value of its configuration when it was built:
    kafka-python raises ValueError, TypeError or an assertion inside its constructor, librdkafka an
    _INVALID_ARG KafkaException naming the property (StockWatch's own values are valid, so it is a
    value of STOCKWATCH_KAFKA_CLIENT_PROPERTIES); or the adapter's ClientPropertyError, raised
    for a value kafka-python would take and only fail on later (text for a number)."""
    from consumer.ports import ClientPropertyError

    kafka = sys.modules.get("kafka")  # loaded by whatever built the client; never imported here
    root = Path(kafka.__file__).parent if kafka is not None and kafka.__file__ else None
    frames = traceback.extract_tb(exc.__traceback__)
    in_constructor = root is not None and any(
        f.name == "__init__" and Path(f.filename).is_relative_to(root) for f in frames
    )
    librdkafka = type(exc).__name__ == "KafkaException" and "configuration property" in str(exc)
    kafka_python = isinstance(exc, ValueError | TypeError | AssertionError) or type(exc).__name__ == (
        "KafkaConfigurationError"
    )
    adapter = isinstance(exc, ClientPropertyError)  # found before the client was built
    if not (adapter or librdkafka or (kafka_python and in_constructor)):
        return None
    return (
        f"a Kafka client refused its configuration ({exc}): check the values of "
        "STOCKWATCH_KAFKA_CLIENT_PROPERTIES"
    )


def _without_secrets(message: str, settings: Settings | None) -> str:
    """``message`` with every secret of the settings masked (:func:`config.secret_values`)."""
    if settings is None:
        return message
    from config import secret_values
    from config.groups import SECRET_MASK

    for secret in secret_values(settings):
        message = message.replace(secret, SECRET_MASK)
    return message
