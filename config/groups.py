"""Frozen slices of the settings, one per concern; each service or adapter gets the slice it uses.

The user-facing names stay flat (``STOCKWATCH_MONGO_URI``, ``mongo_uri = …`` in the TOML file);
a slice maps its short field names to them by alias (``MongoSettings.uri`` ← ``mongo_uri``).
The Kafka slice, with its derived client configuration, lives in :mod:`config.kafka`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from config.rules import RuleSpec

__all__ = [
    "HELP",
    "SECRET_MASK",
    "AlertMode",
    "ControlSettings",
    "GateSettings",
    "HttpSettings",
    "LogLevel",
    "LogSettings",
    "ModelSettings",
    "MongoSettings",
    "NotifySettings",
    "RetrainSettings",
    "ScoringSettings",
    "Slice",
    "StateSeed",
    "mask_uri",
]

SECRET_MASK = "**********"
StateSeed = Literal["snapshot", "lookup", "none"]
AlertMode = Literal["episodes", "every-update"]
HELP: dict[
    str, str
] = {  # descriptions of settings of the later services (the flat model would outgrow its module)
    "alert_mode": "`default` detector: `episodes` (per run of anomalous updates of an item one `open`, "
    "`escalated` when severity rises a level, one `resolved`) or `every-update` (one event per "
    "anomalous update, as before episodes). Seed models always publish every update.",
    "resolve_after": "Consecutive normal updates of an item that resolve its open episode (hysteresis).",
    "renotify_after_s": "Re-send an open episode's `open` event (renotified: true) when an anomalous update "
    "comes this long (event time) after the last notification; 0 = never.",
    "suppressions_refresh_s": "How often `stockwatch consume` reloads the suppressions from Mongo.",
    "future_skew_s": "`default` detector: an update whose occurred_at lies more than this ahead of now "
    "(the wall clock) is a dead letter `future_time` (`score`: a rejected line), never the item's clock.",
    "commit_interval_ms": "At-least-once: commit acknowledged offsets at most this often; exactly-once: one "
    "transaction spans the batches of this long, at most 3 (idle, shutdown and max-events always commit "
    "at once).",
    "peer_group_field": "`default` detector: the input field whose value groups an item with its peers "
    "(price_vs_peers), bound into the model by `train` and the retrain worker (score and consume follow "
    'the model); "" or none = no peer grouping. Items lacking the field have no peers.',
    "gate_max_alert_ratio": "`default`: max alerts on fresh normal motion / the alert budget.",
    "gate_max_recall_drop": "`default`: max drop of planted errors caught vs the current.",
    "gate_min_labels": "Analyst labels needed before the gate compares labelled precision (fewer: skipped).",
    "lease_ttl_s": "Retrain lease expiry, renewed every ttl/4 while a retrain runs: a killed worker's lease "
    "lapses this long after its last renewal. At least twice worker_mongo_timeout_s.",
    "worker_id": "Stable identity of this retrain worker (lease owner, status messages), distinct per "
    "live worker: restarted with the same id it takes its own lease back at once. Unset: "
    "<hostname>-<pid>-<random>.",
    "control_max_age_s": "Commands older (or further in the future) than this are rejected.",
    "control_group_id": "Consumer group of the retrain workers on the control topic.",
    "retrain_cooldown_s": "`retrain` commands this soon after a retrain are coalesced.",
    "retrain_max_attempts": "Attempts per retrain on Mongo/Kafka outages.",
    "retrain_backoff_s": "First retry pause; doubles each attempt.",
    "retrain_contamination": "IsolationForest contamination.",
    "retrain_exclude_flagged": "Leave items the consumer flagged (Mongo `anomalies`) out of training.",
    "retrain_flagged_collection": "Audit collection of flagged items.",
    "retrain_exclude_filter": "Extra Mongo filter (JSON) of inventory documents to leave out of training.",
    "gate_rate_tolerance": "Training anomaly rate must lie in contamination * (1 +/- this).",
    "gate_max_rate_shift": "Max |candidate - current| anomaly rate on the same sample.",
    "gate_max_ks": "Max KS distance between candidate and current scores.",
    "state_changelog_topic": "`default` detector: the compacted changelog of the per-item state ({group_id} and {input_topic} are replaced; one partition per input partition, created if absent).",
    "state_seed": "Where items the state has never seen start: `snapshot` (the inventory, read once at the first batch), `lookup` (one `$in` query per batch: MongoDB with an index), `none`.",
    "notify_group_id": "Consumer group of `stockwatch notify` on the anomaly topic.",
    "notify_webhook": "Webhook URL of `stockwatch notify` (a secret: it may carry a token); --webhook overrides.",
    "notify_max_backoff_s": "Cap of the pause between retries of a failing webhook.",
    "max_decompressed_batch_bytes": "kafka-python clients (consume, retrain worker, ctl): the most one "
    "compressed record batch may inflate to (raised to max_message_bytes + 64 KiB if smaller); a batch "
    "beyond it is skipped unread (the consumer dead-letters it as `decompression_bomb`), so a small "
    "compressed bomb cannot exhaust memory; once a poll has records, it inflates no further batch "
    "past this figure in all (the rest waits for the next poll). librdkafka (confluent-kafka) has no such limit for gzip, "
    "snappy or lz4 (README Security).",
    "worker_mongo_timeout_s": "Mongo server-selection/connect timeout of the retrain worker and scan.",
}

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def mask_uri(uri: str) -> str:
    """``uri`` with the password of its user-info part (``user:password@``) replaced by ``**********``.

    The user-info ends at the last ``@``: an unencoded ``@`` later in the URI masks more, never less.
    """
    base, question, query = uri.partition("?")
    if question:  # credentials can ride in options too (authMechanismProperties, key passwords)
        return f"{mask_uri(base)}?{_mask_query(query)}"
    head, at, tail = uri.rpartition("@")
    if not at:
        return uri
    scheme, sep, userinfo = head.partition("://")
    if not sep:
        scheme, userinfo = "", head
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}{sep}{user}:{SECRET_MASK}@{tail}" if colon else uri


_SECRET_OPTION_WORDS = ("password", "secret", "token", "authmechanismproperties", "key")


def _mask_query(query: str) -> str:
    """The URI options with the value of every credential-like option masked."""
    masked = []
    for option in query.split("&"):
        name, eq, _value = option.partition("=")
        secret = eq and any(word in name.lower() for word in _SECRET_OPTION_WORDS)
        masked.append(f"{name}={SECRET_MASK}" if secret else option)
    return "&".join(masked)


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
    detector: Literal["seed", "default"]
    alert_budget_per_1000: float
    poll_interval_s: float = Field(validation_alias="model_poll_interval_s")
    rules: tuple[RuleSpec, ...] | None  # bound into `default` models at train time
    peer_group_field: str  # bound into `default` models at train time ("" = no peer grouping)

    def rule_table(self) -> list[dict[str, str | float]] | None:
        """The enabled rules as the detector's table (None: the detector's built-in table)."""
        return None if self.rules is None else [r.table_row() for r in self.rules if r.enabled]


class ScoringSettings(Slice):
    """`stockwatch consume` beyond its Kafka client: retries, commits, health, audit, topic creation,
    the per-item state of the `default` detector (changelog topic, seed) and its alert episodes."""

    retry_backoff_s: float = Field(validation_alias="delivery_retry_backoff_s")
    commit_interval_ms: int
    health_stale_s: float
    audit_anomalies: bool
    create_missing_topics: bool
    stall_after_s: float
    state_changelog_topic: str
    state_seed: StateSeed
    alert_mode: AlertMode
    resolve_after: int
    renotify_after_s: float
    suppressions_refresh_s: float
    future_skew_s: float


class HttpSettings(Slice):
    """The metrics and health servers: `stockwatch consume` on ``port``, the retrain worker on
    ``worker_port`` (0 = off), both bound to ``host``."""

    host: str = Field(validation_alias="http_host")
    port: int = Field(validation_alias="http_port")
    worker_port: int = Field(validation_alias="worker_http_port")


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
    worker_id: str | None


class GateSettings(Slice):
    """The validation gate a retrained candidate must pass before it is published."""

    rate_tolerance: float = Field(validation_alias="gate_rate_tolerance")
    max_rate_shift: float = Field(validation_alias="gate_max_rate_shift")
    max_ks: float = Field(validation_alias="gate_max_ks")
    max_alert_ratio: float = Field(validation_alias="gate_max_alert_ratio")
    max_recall_drop: float = Field(validation_alias="gate_max_recall_drop")
    sample_size: int = Field(validation_alias="gate_sample_size")
    min_labels: int = Field(validation_alias="gate_min_labels")


class ControlSettings(Slice):
    """The signed control plane: its key, how old a command may be, the worker group, ctl's wait."""

    key: SecretStr | None = Field(validation_alias="control_key")
    max_age_s: float = Field(validation_alias="control_max_age_s")
    group_id: str = Field(validation_alias="control_group_id")
    ctl_timeout_s: float


class LogSettings(Slice):
    """Logging of every command (the ``--log-level`` flag wins over it)."""

    level: LogLevel = Field(validation_alias="log_level")


class NotifySettings(Slice):
    """The webhook bridge `stockwatch notify`: its consumer group, POST timeout and retry cap."""

    group_id: str = Field(validation_alias="notify_group_id")
    webhook: SecretStr | None = Field(validation_alias="notify_webhook")
    timeout_s: float = Field(validation_alias="notify_timeout_s")
    max_backoff_s: float = Field(validation_alias="notify_max_backoff_s")
