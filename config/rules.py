"""The data-quality rules table of the settings: ``[[rules]]`` entries in the TOML file.

Each entry names one deterministic check of an update (merged onto its item's last accepted
state), evaluated beside the model by the ``default`` detector::

    [[rules]]
    name = "negative_stock"      # unique; listed in every anomaly event the rule fires on
    when = "stock < 0"           # comparisons joined by "and": number, variable or number * variable
    says = "stock is negative"   # the reason shown in the event (default: the check itself)
    severity = 85                # the least severity_score: 50 or more alerts, below 50 only ranks (a hint)
    rebase = false               # true: a level jump; consecutive reports that keep it re-baseline the item
    enabled = true               # false: kept in the file, not bound into models

The table is bound into a model when it is trained (``stockwatch train``): ``score`` and
``consume`` follow the model's rules, so changing the file changes the next model, never a
running one. The grammar and variables here are the ones :mod:`detection.rules` compiles (a
unit test holds the two lists equal); config imports nothing of ``detection``.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["MAX_RULES", "RULE_VARIABLES", "RuleSpec", "check_rules"]

MAX_RULES: Final = 32  # the detector's bitmask of fired rules is 32 bits
RULE_VARIABLES: Final = ("stock", "min", "max", "price", "prev_stock", "prev_min", "prev_max",
                         "prev_price", "age", "unchanged", "left_stock", "stock_change", "usual_drop",
                         "usual_rise", "repeated", "complete", "flag_run", "last_complete")  # fmt: skip
_NUMBER: Final = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_CLAUSE: Final = re.compile(r"^\s*(.+?)\s*(?:<=|>=|==|!=|<|>)\s*(.+?)\s*$")
_TERM: Final = re.compile(rf"^(?:{_NUMBER}\s*\*\s*)?([a-z_]+)$|^{_NUMBER}$")


class RuleSpec(BaseModel):
    """One ``[[rules]]`` entry (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    when: str = Field(min_length=1, max_length=500)
    says: str | None = Field(default=None, min_length=1, max_length=500)
    kind: Literal["data_quality"] = "data_quality"
    severity: float = Field(default=85.0, ge=0.0, le=100.0)
    rebase: bool = False
    enabled: bool = True

    @field_validator("when")
    @classmethod
    def _grammar(cls, when: str) -> str:
        for part in re.split(r"\s+and\s+", when.strip()):
            clause = _CLAUSE.match(part)
            if not clause:
                raise ValueError(f"cannot read {part!r} (like 'stock < 0' or 'stock > 10 * prev_max')")
            for side in (clause.group(1), clause.group(2)):
                term = _TERM.match(side.strip())
                if not term:
                    raise ValueError(f"cannot read {side!r} (a number, a variable or number * variable)")
                if term.group(1) is not None and term.group(1) not in RULE_VARIABLES:
                    raise ValueError(
                        f"unknown variable {term.group(1)!r} (known: {', '.join(RULE_VARIABLES)})"
                    )
        return when

    def table_row(self) -> dict[str, str | float]:
        """The entry as the detector's rule table holds it."""
        return {"name": self.name, "kind": self.kind, "when": self.when, "says": self.says or self.when,
                "severity": self.severity, **({"rebase": 1.0} if self.rebase else {})}  # fmt: skip


def check_rules(rules: tuple[RuleSpec, ...] | None) -> tuple[RuleSpec, ...] | None:
    """Unique names and at most :data:`MAX_RULES` enabled rules (a ValueError names the problem)."""
    if rules is None:
        return None
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f"rule name {rule.name!r} appears twice")
        seen.add(rule.name)
    enabled = sum(rule.enabled for rule in rules)
    if enabled > MAX_RULES:
        raise ValueError(f"at most {MAX_RULES} enabled rules, got {enabled}")
    return rules
