"""What the model store serves: the metadata of either detector and the scorer built from it.

``metadata.json`` names its detector (``seed`` or ``default``); :func:`parse_metadata` validates it
with that detector's model, :func:`build_served` builds the scorer from the checked arrays. Neither
unpickles anything. Importable without scikit-learn or numba (only :func:`build_served` needs them).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from detection.metadata import ModelMetadata
from detection.store_types import ModelVerificationError

if TYPE_CHECKING:
    from detection.detector import ChangeDetector
    from detection.detector_meta import DetectorMetadata
    from detection.model import AnomalyModel

__all__ = ["ALL_KINDS", "NOT_SERVED", "SEED_ONLY", "DetectorKind", "build_served", "parse_metadata"]

DetectorKind = Literal["seed", "default"]
SEED_ONLY: Final[tuple[DetectorKind, ...]] = ("seed",)
ALL_KINDS: Final[tuple[DetectorKind, ...]] = ("seed", "default")
NOT_SERVED: Final[dict[str, str]] = {
    "default": "default detector models are not accepted here (`stockwatch consume` serves them)",
    "seed": "seed detector models are not accepted here",
}


class _Named(BaseModel):
    model_config = ConfigDict(extra="ignore")
    detector: DetectorKind = "seed"


def parse_metadata(data: bytes) -> ModelMetadata | DetectorMetadata:
    """The metadata of either detector (``ValueError`` when it is not valid for the one it names)."""
    from detection.detector_meta import DetectorMetadata

    try:
        named = _Named.model_validate_json(data).detector
    except ValueError:
        named = "seed"  # let the full model say what is wrong
    if named == "default":
        return DetectorMetadata.model_validate_json(data)
    return ModelMetadata.model_validate_json(data)


def build_served(
    version: str,
    arrays: Mapping[str, Any],
    meta: ModelMetadata,
    kinds: Collection[DetectorKind] = SEED_ONLY,
) -> AnomalyModel | ChangeDetector:
    """The scorer ``meta`` names, when its detector is one of ``kinds`` (else a verification refusal)."""
    if meta.detector not in kinds:
        raise ModelVerificationError(f"model {version}: {NOT_SERVED[meta.detector]}")
    try:
        if meta.detector == "default":
            from detection.detector import ChangeDetector
            from detection.detector_meta import DetectorMetadata

            if not isinstance(meta, DetectorMetadata):
                raise ValueError("metadata of a default detector lacks its state")
            return ChangeDetector.from_arrays(arrays, meta)
        from detection.model import AnomalyModel

        return AnomalyModel.from_arrays(arrays, meta)
    except ValueError as exc:
        raise ModelVerificationError(f"model {version}: unusable files ({str(exc)[:200]})") from None
