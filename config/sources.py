"""Where settings come from: the environment (``STOCKWATCH_*``) and one TOML file, both checked.

* The file is ``STOCKWATCH_CONFIG`` when set (it must exist and parse), else the defaults file
  shipped inside this package, so an installed wheel finds it from any working directory.
* Unknown keys in the file and unknown ``STOCKWATCH_*`` variables are errors with the closest
  name, except the variables of the local stack and the build (:data:`NOT_SETTINGS`).
* :class:`Origins` tells, for every setting, what the user wrote: the variable, the key and file,
  or nothing (the default).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from config.errors import SettingsError, did_you_mean

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "NOT_SETTINGS",
    "CheckedEnvSource",
    "ConfigFileSource",
    "Origins",
    "config_file",
    "env_name",
    "read_config_file",
    "unknown_env_problems",
    "unknown_key_problems",
]

ENV_PREFIX = "STOCKWATCH_"
DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent / "stockwatch.toml"
# STOCKWATCH_* variables that are not settings: the config file itself, and what the Makefile,
# .ci/run and stack/stack.sh read (caches, the stack's ports, heap and Go runtime knobs).
NOT_SETTINGS = frozenset({"STOCKWATCH_CONFIG", "STOCKWATCH_CACHE_DIR", "STOCKWATCH_PYTHON"})
NOT_SETTINGS_PREFIXES = ("STOCKWATCH_STACK_",)
_TOML_POSITION = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def env_name(field: str) -> str:
    """The environment variable of a setting: ``STOCKWATCH_`` + its name in capitals."""
    return f"{ENV_PREFIX}{field.upper()}"


def config_file(environ: Mapping[str, str] | None = None) -> Path:
    """The TOML file settings are read from (``STOCKWATCH_CONFIG`` overrides the packaged defaults)."""
    env = os.environ if environ is None else environ
    return Path(env.get("STOCKWATCH_CONFIG") or DEFAULT_CONFIG_FILE)


def read_config_file(environ: Mapping[str, str] | None = None) -> tuple[Path, dict[str, Any]]:
    """The config file and its table; SettingsError names the file (and the line of a syntax error)."""
    env = os.environ if environ is None else environ
    path = config_file(env)
    named = "STOCKWATCH_CONFIG" in env and bool(env["STOCKWATCH_CONFIG"])
    try:
        if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO would block the read
            raise SettingsError([f"the config file {path} is not a regular file"])
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        if not named:
            return path, {}  # an install without its defaults file still has the built-in defaults
        raise SettingsError([f"STOCKWATCH_CONFIG names {path}, which does not exist"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SettingsError([f"cannot read the config file {path}: {reason}"]) from None
    try:
        return path, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_POSITION.match(str(exc))
        where = f"{path}, line {found['line']}, column {found['column']}" if found else str(path)
        raise SettingsError([f"invalid TOML in {where}: {found['msg'] if found else exc}"]) from None


def unknown_key_problems(path: Path, table: Mapping[str, Any], fields: Iterable[str]) -> list[str]:
    """One line per key of the file that is not a setting."""
    known = list(fields)
    return [f"unknown key {key} in {path}{did_you_mean(key, known)}" for key in table if key not in known]


def unknown_env_problems(environ: Mapping[str, str], fields: Iterable[str]) -> list[str]:
    """One line per ``STOCKWATCH_*`` variable that is neither a setting nor in :data:`NOT_SETTINGS`."""
    known = [env_name(f) for f in fields]
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in NOT_SETTINGS:
            continue
        if upper.startswith(NOT_SETTINGS_PREFIXES):
            continue
        hint = did_you_mean(upper, [*known, *sorted(NOT_SETTINGS)])
        problems.append(f"unknown environment variable {name}{hint}")
    return problems


# set by load_settings, which reports unknown names itself together with the invalid values
names_reported: ContextVar[bool] = ContextVar("names_reported", default=False)


class CheckedEnvSource(EnvSettingsSource):
    """``STOCKWATCH_*`` variables, after refusing unknown ones."""

    def __call__(self) -> dict[str, Any]:
        problems = unknown_env_problems(os.environ, self.settings_cls.model_fields)
        if problems and not names_reported.get():
            raise SettingsError(problems)
        return super().__call__()


class ConfigFileSource(PydanticBaseSettingsSource):
    """The TOML file of :func:`config_file`, after refusing unknown keys."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.path, self.table = read_config_file()

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.table.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        if names_reported.get():
            return {k: v for k, v in self.table.items() if k in fields}
        problems = unknown_key_problems(self.path, self.table, fields)
        if problems:
            raise SettingsError(problems)
        return dict(self.table)


class Origins:
    """Where each setting's value came from, as the user would recognise it."""

    def __init__(self, environ: Mapping[str, str], path: Path, table: Mapping[str, Any]) -> None:
        self._env = {name.upper(): value for name, value in environ.items()}
        self.path = path
        self._table = table

    def source(self, field: str) -> str:
        """``env STOCKWATCH_X``, the config file's path, or ``default``."""
        if env_name(field) in self._env:
            return f"env {env_name(field)}"
        if field in self._table:
            return str(self.path)
        return "default"

    def written_as(self, field: str) -> str:
        """What the user wrote: ``STOCKWATCH_X``, ``x in /path/file.toml``, or ``x`` (the default)."""
        if env_name(field) in self._env:
            return env_name(field)
        if field in self._table:
            return f"{field} in {self.path}"
        return field

    def raw(self, field: str) -> Any:
        """The value as written (a string from the environment, a TOML value), or None."""
        if env_name(field) in self._env:
            return self._env[env_name(field)]
        return self._table.get(field)
