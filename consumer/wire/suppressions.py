"""Suppressions (silences): "no new episode for this item and reason until then" — pure, no I/O.

A ``false_positive`` label with ``--suppress-for`` becomes a :class:`Suppression` (stored by the
retrain worker in Mongo ``suppressions``; ``stockwatch suppressions list`` shows the active ones).
The consumer consults :func:`matching` before opening an episode:

* a suppression is **active** while ``now < expires_at`` (then it is ignored; expired ones are data
  kept for the audit trail, not rules);
* it **matches** an event of the same ``item_id`` when its ``reason`` is absent (any reason of the
  item), or when one of the event's reasons or rule names *starts with* it, case-insensitively,
  at a word boundary (:func:`reason_matches`): ``--reason "stock value"`` silences
  "stock value $1.2M is …" and nothing else; ``--reason stock`` silences every stock reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["Suppression", "active", "matching", "reason_matches", "suppression_from_feedback"]


@dataclass(frozen=True, slots=True)
class Suppression:
    """No new episode for ``item_id`` (and ``reason``, when set) before ``expires_at``."""

    item_id: str
    expires_at: datetime
    reason: str | None = None
    episode_id: str | None = None  # the labelled episode it came from (its Mongo _id)
    created_at: datetime | None = None
    who: str | None = None
    note: str | None = None

    def is_active(self, now: datetime) -> bool:
        return now < self.expires_at

    def as_doc(self) -> dict[str, Any]:
        """The stored form (``_id`` = the episode it came from; datetimes as UTC ISO 8601)."""
        return {
            "_id": self.episode_id or f"{self.item_id}:{self.expires_at.isoformat()}",
            "item_id": self.item_id,
            "reason": self.reason,
            "expires_at": self.expires_at.isoformat(),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "who": self.who,
            "note": self.note,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Suppression:
        """Back from :meth:`as_doc` (ValueError/KeyError on a document that is not one)."""
        created = doc.get("created_at")
        return cls(
            item_id=str(doc["item_id"]),
            expires_at=_utc(datetime.fromisoformat(str(doc["expires_at"]))),
            reason=doc.get("reason"),
            episode_id=str(doc["_id"]) if doc.get("_id") is not None else None,
            created_at=_utc(datetime.fromisoformat(created)) if isinstance(created, str) else None,
            who=doc.get("who"),
            note=doc.get("note"),
        )


def suppression_from_feedback(
    *,
    episode_id: str,
    item_id: str,
    suppress_for_s: float,
    when: datetime,
    reason: str | None = None,
    who: str | None = None,
    note: str | None = None,
) -> Suppression:
    """The suppression a ``false_positive`` label asks for: from the label's time, for its window."""
    when = _utc(when)
    return Suppression(
        item_id=item_id,
        expires_at=when + timedelta(seconds=suppress_for_s),
        reason=reason or None,
        episode_id=episode_id,
        created_at=when,
        who=who,
        note=note,
    )


def reason_matches(wanted: str | None, reasons: Iterable[str]) -> bool:
    """No ``wanted`` reason matches anything; else some reason starts with it (case-insensitive,
    followed by the end or a non-alphanumeric character, so "price" never matches "prices")."""
    if not wanted:
        return True
    w = wanted.strip().casefold()
    for reason in reasons:
        r = reason.strip().casefold()
        if r.startswith(w) and (len(r) == len(w) or not r[len(w)].isalnum()):
            return True
    return False


def active(suppressions: Iterable[Suppression], now: datetime) -> list[Suppression]:
    """The suppressions still in force at ``now``, soonest expiry first."""
    return sorted((s for s in suppressions if s.is_active(now)), key=lambda s: s.expires_at)


def matching(
    suppressions: Iterable[Suppression], *, item_id: str, reasons: Iterable[str], now: datetime
) -> Suppression | None:
    """The active suppression that silences an event of ``item_id`` with ``reasons`` (None: none)."""
    reasons = list(reasons)
    for s in active(suppressions, now):
        if s.item_id == item_id and reason_matches(s.reason, reasons):
            return s
    return None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
