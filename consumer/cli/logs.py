"""Logging of every ``stockwatch`` command: one JSON object per line on stderr.

Each line has ``ts``, ``level``, ``logger``, ``msg`` (``exc`` with a traceback) and every field a
call passes in ``extra=`` — ``log.warning("dead letter", extra={"topic": t, "offset": o})`` gives
``{..., "msg": "dead letter", "topic": t, "offset": o}``. Our own code never hands a secret to a
logger; a client library may (kafka-python logs its whole configuration, SASL password included,
at DEBUG), so every line is written with the configured secrets masked. Python warnings (a
library's) become ``py.warnings`` lines: category and text, no source path; a URI password in the
text is masked.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from pythonjsonlogger.orjson import OrjsonFormatter

from config.groups import SECRET_MASK

__all__ = ["BENIGN_LIBRARY_MESSAGES", "THIRD_PARTY_LOGGERS", "JsonLogFormatter", "configure_logging"]

THIRD_PARTY_LOGGERS = ("kafka", "pymongo", "consumer.adapters.confluent.librdkafka")
"""Client libraries that log every connection and metadata refresh at INFO: WARNING unless DEBUG."""

BENIGN_LIBRARY_MESSAGES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # right after our own "does not exist (yet); waiting for it" warning
    ("kafka.cluster", re.compile(r"Topic \S+ not found in cluster metadata")),
    # kafka-python's own I/O thread measuring a GIL-bound step of ours; nothing is lost
    ("kafka.net.selector", re.compile(r"Task .* ran for [0-9.]+s \(>")),
)
"""(logger, message prefix) of kafka-python lines that are not problems: demoted to DEBUG."""

_USERINFO = re.compile(r"(://[^/\s:@]*:)[^@\s]*@")  # user:password@ in any URI a warning quotes
_warnings_log = logging.getLogger("py.warnings")

_FIELD_NAMES = {"levelname": "level", "name": "logger", "message": "msg", "exc_info": "exc"}


class JsonLogFormatter(OrjsonFormatter):
    """``ts``, ``level``, ``logger``, ``msg``, then the record's ``extra=`` fields (see the module)."""

    def __init__(self) -> None:
        super().__init__(["levelname", "name", "message"], rename_fields=_FIELD_NAMES)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["ts"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        super().add_fields(log_data, record, message_dict)


class DemoteBenignLibraryMessages(logging.Filter):
    """Turns the known-benign library lines into DEBUG records, shown only when DEBUG is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:
            return True
        for name, prefix in BENIGN_LIBRARY_MESSAGES:
            if record.name == name and prefix.match(record.getMessage()):
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at emit time (so in-process callers can capture it),
    with each of ``secrets`` masked, as written and as JSON escapes it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        shown = {form for s in secrets if s for form in (s, orjson.dumps(s).decode()[1:-1])}
        self._secrets = sorted(shown, key=len, reverse=True)  # a secret inside a longer one: the longer first

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            for secret in self._secrets:
                line = line.replace(secret, SECRET_MASK)
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def configure_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """Install the JSON stderr handler on the root logger (replacing one a previous call installed);
    ``secrets`` (:func:`config.secret_values`) never reach a line."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler(secrets)
    handler.addFilter(DemoteBenignLibraryMessages())
    handler.setFormatter(JsonLogFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    warnings.showwarning = _log_warning


def _log_warning(  # noqa: PLR0917 -- warnings.showwarning's own signature
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A Python warning (a library's, e.g. a bad Mongo URI option) as one JSON line: no source path."""
    text = _USERINFO.sub(r"\1**********@", str(message))
    _warnings_log.warning("%s: %s", category.__name__, text, extra={"category": category.__name__})
