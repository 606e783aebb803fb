"""Frozen slices of the settings, one per concern; each service or adapter gets the slice it uses.

The user-facing names stay flat (``STOCKWATCH_MONGO_URI``, ``mongo_uri = …`` in the TOML file);
a slice maps its short field names to them by alias (``MongoSettings.uri`` ← ``mongo_uri``).
The Kafka slice, with its derived client configuration, lives in :mod:`config.kafka`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = [
    "SECRET_MASK",
    "ControlSettings",
    "GateSettings",
    "HttpSettings",
    "ModelSettings",
    "MongoSettings",
    "RetrainSettings",
    "ScoringSettings",
    "Slice",
    "StateSeed",
    "mask_uri",
]

SECRET_MASK = "**********"
StateSeed = Literal["snapshot", "lookup", "none"]


def mask_uri(uri: str) -> str:
    """``uri`` with the password of its user-info part (``user:password@``) replaced by ``**********``.

    The user-info ends at the last ``@``: an unencoded ``@`` later in the URI masks more, never less.
    """
    head, at, tail = uri.rpartition("@")
    if not at:
        return uri
    scheme, sep, userinfo = head.partition("://")
    if not sep:
        scheme, userinfo = "", head
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}{sep}{user}:{SECRET_MASK}@{tail}" if colon else uri


class Slice(BaseModel):
    """A frozen view of some flat settings, validated from the flat model's values by alias."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class MongoSettings(Slice):
    """Where the inventory lives (FerretDB/MongoDB) and how long a connection attempt may take."""

    uri: str = Field(validation_alias="mongo_uri", repr=False)
    db: str = Field(validation_alias="mongo_db")
    collection: str = Field(validation_alias="mongo_collection")
    timeout_s: float = Field(validation_alias="worker_mongo_timeout_s")

    @property
    def safe_uri(self) -> str:
        """The URI for logs and messages (password masked)."""
        return mask_uri(self.uri)


class ModelSettings(Slice):
    """The model store: directory, retention, signing key, load policy, hot-swap polling."""

    dir: Path = Field(validation_alias="model_dir")
    keep: int = Field(validation_alias="model_keep")
    signing_key: SecretStr | None = Field(validation_alias="model_signing_key")
    allow_sklearn_mismatch: bool
    poll_interval_s: float = Field(validation_alias="model_poll_interval_s")


class ScoringSettings(Slice):
    """`stockwatch consume` beyond its Kafka client: retries, commits, health, audit, topic creation,
    the per-item state of the `default` detector (changelog topic, seed)."""

    retry_backoff_s: float = Field(validation_alias="delivery_retry_backoff_s")
    commit_interval_ms: int
    health_stale_s: float
    audit_anomalies: bool
    create_missing_topics: bool
    stall_after_s: float
    state_changelog_topic: str
    state_seed: StateSeed


class HttpSettings(Slice):
    """The metrics and health server of `stockwatch consume` (port 0 = off)."""

    host: str = Field(validation_alias="http_host")
    port: int = Field(validation_alias="http_port")


class RetrainSettings(Slice):
    """The retrain worker: schedule, Mongo reads, retries, training data and its lease."""

    interval_s: float = Field(validation_alias="retrain_interval_s")
    cooldown_s: float = Field(validation_alias="retrain_cooldown_s")
    batch_size: int = Field(validation_alias="retrain_batch_size")
    progress_every: int = Field(validation_alias="retrain_progress_every")
    max_attempts: int = Field(validation_alias="retrain_max_attempts")
    backoff_s: float = Field(validation_alias="retrain_backoff_s")
    contamination: float = Field(validation_alias="retrain_contamination")
    exclude_flagged: bool = Field(validation_alias="retrain_exclude_flagged")
    flagged_collection: str = Field(validation_alias="retrain_flagged_collection")
    exclude_filter: str | None = Field(validation_alias="retrain_exclude_filter")
    lease_ttl_s: float


class GateSettings(Slice):
    """The validation gate a retrained candidate must pass before it is published."""

    rate_tolerance: float = Field(validation_alias="gate_rate_tolerance")
    max_rate_shift: float = Field(validation_alias="gate_max_rate_shift")
    max_ks: float = Field(validation_alias="gate_max_ks")
    sample_size: int = Field(validation_alias="gate_sample_size")


class ControlSettings(Slice):
    """The signed control plane: its key, how old a command may be, the worker group, ctl's wait."""

    key: SecretStr | None = Field(validation_alias="control_key")
    max_age_s: float = Field(validation_alias="control_max_age_s")
    group_id: str = Field(validation_alias="control_group_id")
    ctl_timeout_s: float
