"""``train``'s forest flags (``--n-estimators``, ``--max-samples`` …) checked into one line per flag."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detection import ForestParams

__all__ = ["forest_params"]

# a union's errors, one per member, read badly: say what it takes
_TAKES = {
    "max_samples": "must be auto, a count of at least 2 (below 2**63) or a fraction in (0, 1]",
    "contamination": "must be auto or a fraction in (0, 0.5]",
}


def forest_params(chosen: dict[str, Any]) -> ForestParams:
    """``ForestParams`` of the flags given (None: not given); TrainingError names each refused flag.

    pydantic's own message spans several lines and links to its docs; a user wants the flag and why.
    """
    from pydantic import ValidationError

    from detection import ForestParams, TrainingError

    try:
        return ForestParams(**{name: value for name, value in chosen.items() if value is not None})
    except ValidationError as exc:
        reasons: dict[str, list[str]] = {}
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            msgs = reasons.setdefault(field, [])
            if error["msg"] not in msgs:
                msgs.append(error["msg"])
        problems = [
            f"--{field.replace('_', '-')}: {_TAKES.get(field) or ' or '.join(msgs)} (got {chosen.get(field)!r})"
            for field, msgs in reasons.items()
        ]
        raise TrainingError("; ".join(problems)) from None
