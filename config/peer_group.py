"""The ``peer_group_field`` setting: which input field groups an item with its peers (``category``, ...).

The ``default`` detector compares an item's price with its peer group's (``price_vs_peers``);
``stockwatch train`` binds the field into the model, so ``score`` and ``consume`` follow the model.
A value ``""`` or ``none`` means no peer grouping (normalised to ``""``: every item alone, as
today an item lacking the field). The field must be a plain top-level name (Mongo projects it and
the parser reads it as one key) and none of the fields the detector reads as numbers or identity.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator

__all__ = [
    "NO_PEER_GROUP",
    "RESERVED_FIELDS",
    "PeerGroupField",
    "check_group_field",
]

NO_PEER_GROUP: Final = ""  # the normalised "no grouping" (what the model's metadata records)
MAX_LENGTH: Final = 64
# what detection.updates reads as the item's id, numbers, time and event id (aliases included)
RESERVED_FIELDS: Final = frozenset(("item_id", "sku", "_id", "stock_quantity", "min_stock_level",
                                    "max_stock_level", "min_stock", "max_stock", "price", "occurred_at",
                                    "event_id"))  # fmt: skip
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def check_group_field(value: str) -> str:
    """``value`` as a peer-group field (``""`` for none/empty); ValueError says why in one line."""
    name = value.strip()
    if name.lower() in ("", "none"):
        return NO_PEER_GROUP
    if len(name) > MAX_LENGTH:
        raise ValueError(f"a field name of at most {MAX_LENGTH} characters, got {len(name)}")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{name[:MAX_LENGTH]!r} is not a plain field name (letters, digits, _ and -, not starting "
            'with a digit or -; "" or none for no peer grouping)'
        )
    if name in RESERVED_FIELDS:
        raise ValueError(f"{name!r} is a field the detector reads as a number or an id, not a peer group")
    return name


PeerGroupField = Annotated[str, AfterValidator(check_group_field)]
