"""Reading the settings at an entry point: every user mistake reported at once, in the user's words.

:func:`load_settings` is what the CLI calls: unknown variables and keys, a missing or broken
config file and every invalid value become one :class:`SettingsError` whose lines name the
variable (``STOCKWATCH_MAX_POLL_RECORDS``) or key and file (``max_poll_records in /etc/sw.toml``)
and never show a secret. :func:`effective_settings` is what `stockwatch config` prints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote

from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError as UndecodableValue

from config.errors import SettingsError
from config.groups import SECRET_MASK, mask_uri
from config.kafka_security import SECRET_PROPERTY, shown_properties
from config.settings import SECRET_FIELDS, Settings
from config.sources import (
    Origins,
    env_name,
    names_reported,
    read_config_file,
    unknown_env_problems,
    unknown_key_problems,
)

__all__ = ["EffectiveSetting", "effective_settings", "load_settings", "secret_values", "shown_value"]

_UNDECODABLE_FIELD = re.compile(r'field "(?P<field>\w+)"')


class EffectiveSetting(NamedTuple):
    """One row of `stockwatch config`: the setting, its variable, its value (secrets masked), its source."""

    name: str
    env: str
    value: Any
    source: str


def _origins(environ: Mapping[str, str]) -> Origins:
    path, table = read_config_file(environ)
    return Origins(environ, path, table)


def load_settings() -> Settings:
    """The settings from the environment and the config file; SettingsError lists every mistake."""
    environ = dict(os.environ)
    fields = Settings.model_fields
    problems = unknown_env_problems(environ, fields)
    try:
        path, table = read_config_file(environ)
    except SettingsError as exc:
        raise SettingsError([*problems, *exc.problems]) from None
    problems += unknown_key_problems(path, table, fields)
    token = names_reported.set(True)  # the unknown names are in problems: values are checked too
    try:
        settings = Settings()
    except ValidationError as exc:
        problems += validation_problems(exc, Origins(environ, path, table))
    except UndecodableValue as exc:  # a JSON setting in the environment that is not JSON at all
        found = _UNDECODABLE_FIELD.search(str(exc))
        where = Origins(environ, path, table).written_as(found["field"]) if found else "a setting"
        problems.append(f"{where}: is not valid JSON")  # the value is never shown: it may hold a secret
    finally:
        names_reported.reset(token)
    if problems:
        raise SettingsError(problems)
    return settings


def validation_problems(exc: ValidationError, origins: Origins) -> list[str]:
    """One line per pydantic error, naming what the user wrote; secret values are never shown."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc, msg = error["loc"], error["msg"]
        if error["type"] == "settings_conflict":
            involved = str((error.get("ctx") or {}).get("fields", "")).split()
            whence = "; ".join(f"{f}: {origins.source(f)}" for f in involved)
            problems.append(f"{msg} ({whence})" if whence else msg)
        elif loc and loc[0] == "rules":
            problems.append(_rule_problem(loc, msg, origins))
        elif loc and isinstance(loc[0], str) and loc[0] in Settings.model_fields:
            field = loc[0]
            raw = origins.raw(field)
            shown = mask_uri(raw) if field == "mongo_uri" and isinstance(raw, str) else raw
            hidden = raw is None or (field in SECRET_FIELDS and shown is raw)
            got = "" if hidden else f" (got {shown!r})"
            problems.append(f"{origins.written_as(field)}: {msg.removeprefix('Value error, ')}{got}")
        else:
            problems.append(msg)
    return problems


def _rule_problem(loc: tuple[int | str, ...], msg: str, origins: Origins) -> str:
    """``rules in FILE, rule 2 ("name"), when: msg``: which entry and field, never the whole table."""
    where = origins.written_as("rules")
    raw = origins.raw("rules")
    if len(loc) > 1 and isinstance(loc[1], int):
        entry = raw[loc[1]] if isinstance(raw, list) and loc[1] < len(raw) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        where += f", rule {loc[1] + 1}" + (f" ({name!r})" if isinstance(name, str) else "")
    if len(loc) > 2:
        where += f", {'.'.join(str(part) for part in loc[2:])}"
    if msg == "Input should be a valid tuple":
        msg = "must be a list of rules ([[rules]] tables in TOML, a JSON list in the environment)"
    return f"{where}: {msg.removeprefix('Value error, ')}"


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold, as written (longest first), for masking where a library may
    print one (its debug log, an error text): keys, passwords, the webhook URL, password-like
    client properties, the Mongo URI's password (also percent-decoded)."""
    found = [
        secret.get_secret_value()
        for secret in (
            settings.control_key,
            settings.model_signing_key,
            settings.notify_webhook,
            settings.kafka_sasl_password,
        )
        if secret is not None
    ]
    found += [str(v) for k, v in settings.kafka_client_properties.items() if SECRET_PROPERTY.search(k)]
    head, at, _ = settings.mongo_uri.partition("?")[0].rpartition("@")
    _, colon, password = head.partition("://")[2].partition(":") if at else ("", "", "")
    if colon and password:
        found += [password, unquote(password)]
    return sorted({s for s in found if s}, key=len, reverse=True)


def shown_value(field: str, value: Any) -> Any:
    """A setting's value as it may be printed: keys masked, the Mongo URI's password masked."""
    if isinstance(value, SecretStr):
        return SECRET_MASK
    if field == "kafka_client_properties" and isinstance(value, dict):
        return shown_properties(value)
    if field in SECRET_FIELDS and isinstance(value, str):
        return mask_uri(value) if field == "mongo_uri" else SECRET_MASK
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if field == "rules" and isinstance(value, tuple):  # names, marked when a hint or disabled
        return ", ".join(r.name + ("" if r.enabled else " (disabled)") + (" (hint)" if r.severity < 50 else "")
                         for r in value)  # fmt: skip
    return str(value)


def effective_settings(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> list[EffectiveSetting]:
    """Every setting with its printable value and where it came from (env, the file's path, default)."""
    origins = _origins(os.environ if environ is None else environ)
    return [
        EffectiveSetting(name, env_name(name), shown_value(name, value), origins.source(name))
        for name, value in settings
    ]
