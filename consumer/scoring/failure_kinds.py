"""A small fixed set of label values for failed deliveries, instead of Python class names.

The adapters wrap their client's error in a ``DeliveryError`` (chained, or its ``repr`` in the
message); both clients name the cause in text — kafka-python by class
(``MessageSizeTooLargeError``), librdkafka by code (``MSG_SIZE_TOO_LARGE``) — so the kind is found
by matching that text. Anything unrecognised is ``other``.
"""

from __future__ import annotations

__all__ = ["DELIVERY_FAILURE_KINDS", "delivery_failure_kind"]

DELIVERY_FAILURE_KINDS = ("fenced", "too_large", "timeout", "broker_unavailable", "other")

# First match wins: a fenced producer's timeout is still a fencing.
_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fenced", ("fenced", "invalidproducerepoch", "invalid_producer_epoch")),
    ("too_large", ("toolarge", "too_large")),
    ("timeout", ("timeout", "timedout", "timed_out", "timed out")),
    (
        "broker_unavailable",
        (
            "nobrokers",
            "brokernotavailable",
            "broker_not_available",
            "all_brokers_down",
            "leadernotavailable",
            "leader_not_available",
            "notleader",
            "not_leader",
            "notenoughreplicas",
            "not_enough_replicas",
            "connection",
            "transport",
            "nodenotready",
        ),
    ),
)
_MAX_CHAIN = 5


def delivery_failure_kind(exc: BaseException) -> str:
    """One of :data:`DELIVERY_FAILURE_KINDS` for ``exc`` and the errors it was raised from."""
    parts: list[str] = []
    current: BaseException | None = exc
    for _ in range(_MAX_CHAIN):
        if current is None:
            break
        parts.append(f"{type(current).__name__} {current}")
        current = current.__cause__ or current.__context__
    text = " ".join(parts).lower()
    for kind, markers in _MARKERS:
        if any(marker in text for marker in markers):
            return kind
    return "other"
