"""kafka-python's keywords for the property names of :class:`config.KafkaSettings`' client configs."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer

from config.kafka_security import KAFKA_PYTHON_NAMES
from consumer.ports import ClientPropertyError

__all__ = ["kafka_python_config"]

log = logging.getLogger(__name__)

_DROPPED: set[tuple[str, str]] = set()  # (client class, property) already warned about


def kafka_python_config(config: Mapping[str, Any], client: type = KafkaConsumer) -> dict[str, Any]:
    """The property names of :class:`config.KafkaSettings`' configs as ``client``'s keywords.

    kafka-python refuses keywords it does not know: a property (from kafka_client_properties)
    that this kind of client lacks is left out, and said once at WARNING.
    """
    out = {}
    defaults: Mapping[str, Any] = getattr(client, "DEFAULT_CONFIG", {})
    for name, value in config.items():
        keyword = KAFKA_PYTHON_NAMES.get(name, name.replace(".", "_"))
        if name == "ssl.endpoint.identification.algorithm":
            out["ssl_check_hostname"] = value == "https"
        elif keyword in defaults:
            out[keyword] = _typed(name, value, defaults[keyword])
        elif (client.__name__, name) not in _DROPPED:
            _DROPPED.add((client.__name__, name))
            log.warning("kafka-python's %s has no property %s: not applied to it", client.__name__, name)
    return out


_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_MIN_INT, _MAX_INT = -1, 2**31 - 1  # librdkafka's properties are 32-bit; -1 is "off" for the few that have it


def _typed(name: str, value: Any, default: Any) -> Any:
    """``value`` of property ``name`` as a number where kafka-python's default is one: decimal text
    such as "5000" (librdkafka takes it) becomes 5000; anything else, or a number outside
    librdkafka's 32-bit range, is refused now: as given, a client would only fail later (a
    bootstrap timing out, the state's restore reader retried without end)."""
    numeric = (
        isinstance(default, int | float) and not isinstance(default, bool) and name != "acks"
    )  # or "all"
    if not numeric:
        return value
    number: Any = value
    if isinstance(value, str) and _DECIMAL.fullmatch(value):  # librdkafka reads "1e9" as 1: no exponents
        number = float(value) if "." in value else int(value)
    if isinstance(number, int | float) and not isinstance(number, bool) and _MIN_INT <= number <= _MAX_INT:
        return number
    raise ClientPropertyError(f"{name}={value!r} must be a number from {_MIN_INT} to {_MAX_INT}")
