"""Validate real output against the committed JSON Schemas (docs/schemas/<name>.schema.json)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any

import jsonschema
import orjson

from consumer.wire.schemas import SCHEMA_DIR

FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """RFC 3339 date-time (jsonschema checks it only with an extra package): ISO 8601 with a zone."""
    return not isinstance(value, str) or ("T" in value and datetime.fromisoformat(value).tzinfo is not None)


@cache
def validator(name: str) -> Any:
    """The validator of ``docs/schemas/<name>.schema.json`` (the schema itself is checked first)."""
    schema = orjson.loads((SCHEMA_DIR / f"{name}.schema.json").read_bytes())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=FORMATS)


def validate(name: str, obj: Any) -> Any:
    """Raise ``jsonschema.ValidationError`` unless ``obj`` fits schema ``name``; returns ``obj``."""
    validator(name).validate(obj)
    return obj


def validate_all(name: str, objs: Iterable[Any]) -> list[Any]:
    """:func:`validate` each of ``objs``; returns them as a list (fails on an empty one: nothing checked)."""
    out = [validate(name, obj) for obj in objs]
    assert out, f"no {name} to validate"
    return out


def dlq_headers(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """A dead-letter record's headers as the JSON object its schema describes (values as UTF-8 text)."""
    return {key: value.decode("utf-8", "replace") for key, value in headers}
