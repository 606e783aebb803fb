"""The words the model report uses for detectors and features: a title and an axis label each."""

from __future__ import annotations

from typing import Final

__all__ = ["DETECTOR_WORDS", "FEATURE_WORDS", "feature_axis", "feature_title"]

DETECTOR_WORDS: Final = {
    "seed": "seed detector (each item's state)",
    "default": "default detector (changes per item)",
}

# name -> (panel title, what the x axis measures); both detectors' features (detection.FEATURE_NAMES,
# detection.CHANGE_FEATURE_NAMES), so a reader never has to know the code names.
FEATURE_WORDS: Final[dict[str, tuple[str, str]]] = {
    "stock_quantity": ("Stock on hand", "units"),
    "stock_ratio": ("Stock against the minimum level", "stock / min level"),
    "stock_range_position": ("Where stock sits between min and max", "0 = at min, 1 = at max"),
    "value_at_risk": ("Value of the stock on hand", "stock x price"),
    "price": ("Price per unit", "price"),
    "min_stock_level": ("Minimum stock level", "units"),
    "max_stock_level": ("Maximum stock level", "units"),
    "stock_vs_max": ("Stock against the item's max level", "log(1 + stock / max level)"),
    "stock_step": ("Stock change since the item's last update", "log ratio, new / previous"),
    "drop_vs_usual": ("Stock drop against the item's usual drop", "log(1 + drop / usual drop)"),
    "rise_vs_usual": ("Stock rise against the item's usual rise", "log(1 + rise / usual rise)"),
    "price_step": ("Price change since the item's last update", "log ratio, new / previous"),
    "price_vs_ref": ("Price against the item's regular price", "log ratio, price / regular price"),
    "price_vs_peers": ("Price among the item's peer group", "robust z-score of the log price"),
    "min_step": ("Min level change since the item's last update", "log ratio, new / previous"),
    "max_step": ("Max level change since the item's last update", "log ratio, new / previous"),
    "min_vs_max": ("Min level as a share of the max level", "min level / max level"),
    "gap_vs_usual": ("Time since the item's last update against its usual gap", "log ratio, gap / usual gap"),
}


def feature_title(name: str) -> str:
    """The panel title in words (an unknown name, e.g. from a newer model, is shown as it is)."""
    return FEATURE_WORDS[name][0] if name in FEATURE_WORDS else name


def feature_axis(name: str) -> str:
    """The x-axis label: what is measured, and the code name that docs and README tables use."""
    return f"{FEATURE_WORDS[name][1]}  [{name}]" if name in FEATURE_WORDS else name
