"""One item's record in the state store: the detector's history and its alert episode, 112 bytes.

:data:`ITEM_DTYPE` (packed, little-endian) is the 80-byte :data:`detection.STATE_DTYPE` followed by
the 32-byte :data:`consumer.scoring.episodes.EPISODE_DTYPE` — one flat record, so the detector's
fields read the same (``records["stock"]``) and the episode travels in the same changelog value and
the same transaction. Records of the detector alone (the 80-byte layout of changelogs written before
episodes) widen to it with no episode open (:func:`as_items`).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from consumer.scoring.episodes import EPISODE_DTYPE
from detection.item_state import STATE_DTYPE

__all__ = ["ITEM_DTYPE", "as_items", "byte_rows", "episodes_of", "join", "states_of"]

Records = npt.NDArray[np.void]

ITEM_DTYPE: Final = np.dtype(STATE_DTYPE.descr + EPISODE_DTYPE.descr)
_STATE: Final = STATE_DTYPE.itemsize


def byte_rows(records: Records) -> npt.NDArray[np.uint8]:
    """Records as rows of bytes (copying those is ~20x faster than a structured copy)."""
    records = np.ascontiguousarray(records)
    return records.view(np.uint8).reshape(records.shape[0], records.dtype.itemsize)


def states_of(records: Records) -> Records:
    """The detector's records (a contiguous copy, STATE_DTYPE)."""
    return np.ascontiguousarray(byte_rows(records)[:, :_STATE]).view(STATE_DTYPE).reshape(-1)


def episodes_of(records: Records) -> Records:
    """The episode records (a contiguous copy, EPISODE_DTYPE)."""
    return np.ascontiguousarray(byte_rows(records)[:, _STATE:]).view(EPISODE_DTYPE).reshape(-1)


def join(states: Records, episodes: Records | None = None) -> Records:
    """Item records of the detector's records and their episodes (none open when ``episodes`` is None)."""
    out = np.zeros(states.shape[0], ITEM_DTYPE)
    raw = byte_rows(out)
    raw[:, :_STATE] = byte_rows(states)
    if episodes is not None:
        raw[:, _STATE:] = byte_rows(episodes)
    return out


def as_items(records: Records) -> Records:
    """``records`` as ITEM_DTYPE: item records as they are, the detector's alone widened."""
    if records.dtype == ITEM_DTYPE:
        return records
    if records.dtype == STATE_DTYPE:
        return join(records)
    raise ValueError(f"not item records: {records.dtype}")
