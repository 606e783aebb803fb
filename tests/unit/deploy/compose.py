"""docker-compose.yml as `docker compose config` would see it, without Docker: load, interpolate, read.

Interpolation follows the Compose specification: ``$$`` is a literal ``$``; ``$VAR`` and ``${VAR}``
take the variable (empty when unset); ``${VAR:-default}`` / ``${VAR-default}`` use the default when
the variable is unset or empty / unset; ``${VAR:?err}`` / ``${VAR?err}`` fail with ``err`` when it
is unset or empty / unset; ``${VAR:+alt}`` / ``${VAR+alt}`` give ``alt`` when it is set and
non-empty / set. Defaults, errors and alternatives are interpolated in turn (nesting). Values are
interpolated, keys are not; YAML anchors and ``<<`` merges are resolved by the YAML loader.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "InterpolationError",
    "interpolate",
    "load_compose",
    "render",
    "service_command",
    "service_env",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    """A required variable (``${VAR:?err}``) is missing; ``str()`` is what compose prints."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"required variable {name} is missing a value: {message}")
        self.name = name
        self.message = message


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose body starts at ``start`` (nesting counted)."""
    depth, i = 1, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def _braced(body: str, env: Mapping[str, str]) -> str:
    found = _NAME.match(body)
    if found is None:
        raise ValueError(f"invalid interpolation format ${{{body}}}")
    name, rest = found.group(), body[found.end() :]
    value = env.get(name)
    if not rest:
        return value or ""
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise ValueError(f"invalid interpolation format ${{{body}}}")
    arg = rest[len(operator) :]
    present = bool(value) if operator.startswith(":") else value is not None
    if operator.endswith("-"):
        return value or "" if present else interpolate(arg, env)
    if operator.endswith("?"):
        if not present:
            raise InterpolationError(name, interpolate(arg, env))
        return value or ""
    return interpolate(arg, env) if present else ""  # "+"


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` with every ``$VAR`` / ``${...}`` form replaced per the Compose specification."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            out.append(_braced(text[i + 2 : end], env))
            i = end + 1
        else:
            found = _NAME.match(text, i + 1)
            if found is None:
                out.append("$")
                i += 1
            else:
                out.append(env.get(found.group(), ""))
                i = found.end()
    return "".join(out)


def render(node: Any, env: Mapping[str, str]) -> Any:
    """Every string value under ``node`` interpolated (keys left as they are)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: render(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [render(value, env) for value in node]
    return node


def load_compose(path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file, interpolated with ``env`` (raw when ``env`` is None)."""
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data if env is None else dict(render(data, env))


def service_env(service: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """A service's environment as strings (list or mapping form; a bare name takes ``env``'s value)."""
    raw = service.get("environment") or {}
    pairs: dict[str, Any] = (
        dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
        if isinstance(raw, list)
        else dict(raw)
    )
    out: dict[str, str] = {}
    for key, value in pairs.items():
        if value is None:
            if key in env:
                out[key] = env[key]
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


def service_command(service: Mapping[str, Any]) -> list[str]:
    """The service's command as an argument list (a string is split like a shell would)."""
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
