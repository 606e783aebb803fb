"""StockWatch settings: one frozen pydantic model, read once at the entry point.

Sources, strongest first: keyword arguments (tests), environment variables
(``STOCKWATCH_*``), the TOML config file (``STOCKWATCH_CONFIG``, default
``config/stockwatch.toml``), then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# Shipped inside the package (package data), so an installed wheel finds it from any directory.
DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent / "stockwatch.toml"


def config_file() -> Path:
    """The TOML file settings are read from (``STOCKWATCH_CONFIG`` overrides the default)."""
    return Path(os.environ.get("STOCKWATCH_CONFIG", DEFAULT_CONFIG_FILE))


class Settings(BaseSettings):
    """Every knob of the services. Env names are ``STOCKWATCH_`` + the field name in capitals."""

    model_config = SettingsConfigDict(
        env_prefix="STOCKWATCH_",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    # --- connections (names fixed by the issues; users and scripts rely on them) ---
    kafka_bootstrap: str = "127.0.0.1:9092"
    mongo_uri: str = "mongodb://127.0.0.1:27017"
    mongo_db: str = "warehouse"
    mongo_collection: str = "inventory"

    # --- topics ---
    input_topic: str = "inventory.stock-updates"
    anomaly_topic: str = "inventory.anomalies"
    dlq_topic: str = "inventory.stock-updates.dlq"
    control_topic: str = "stockwatch.control"
    status_topic: str = "stockwatch.status"
    decisions_topic: str | None = Field(
        default=None, description="When set, every decision (not only anomalies) is published here."
    )
    group_id: str = "stockwatch-scorer"

    # --- models ---
    model_dir: Path = Path("./models")
    model_keep: int = Field(default=5, ge=1, description="How many published versions the store keeps.")
    model_signing_key: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key: when set, models are signed on publish and verified on load.",
    )
    allow_sklearn_mismatch: bool = Field(
        default=False, description="Load models saved by another scikit-learn version."
    )

    # --- consumer loop ---
    delivery: Literal["at-least-once", "exactly-once"] = "at-least-once"
    max_poll_records: int = Field(default=2000, ge=1, le=1_000_000)
    poll_timeout_ms: int = Field(default=100, ge=0)
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    model_poll_interval_s: float = Field(default=2.0, gt=0)
    http_port: int = Field(
        default=9400, ge=0, le=65535, description="Metrics, /healthz and /readyz; 0 = off."
    )
    audit_anomalies: bool = Field(default=False, description="Also write anomalies to Mongo `anomalies`.")

    # --- `stockwatch consume`: Kafka client tuning, delivery, health ---
    kafka_client: Literal["kafka-python", "confluent-kafka"] = Field(
        default="kafka-python",
        description="Client library of the consumer's hot path (input and outputs); confluent-kafka "
        "(librdkafka, `pip install 'stockwatch[confluent]'`) decodes records in C.",
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a group without committed offsets starts reading."
    )
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    max_partition_fetch_bytes: int = Field(
        default=8_388_608,
        ge=65_536,
        description="Fetch size per partition (raised to max_message_bytes + 64 KiB if smaller); "
        "8 MiB instead of the clients' 1 MiB: fewer fetch round trips, +25 % events/s (README § Benchmarks).",
    )
    session_timeout_ms: int = Field(default=45_000, ge=1000)
    producer_linger_ms: int = Field(default=5, ge=0, description="Producer batching delay.")
    producer_batch_size: int = Field(default=131_072, ge=1024, description="Producer batch bytes.")
    transactional_id: str | None = Field(
        default=None,
        description="Exactly-once only: the producer's transactional.id; must be stable across restarts "
        "of one instance and distinct between instances (default: `<group_id>.<hostname>`).",
    )
    transaction_timeout_ms: int = Field(default=60_000, ge=1000)
    create_missing_topics: bool = Field(
        default=True, description="Create the output topics (anomalies, DLQ, decisions) if absent."
    )
    http_host: str = Field(default="0.0.0.0", description="Bind address of the metrics/health server.")
    health_stale_s: float = Field(
        default=30.0, gt=0, description="/healthz fails when the poll loop has not ticked for this long."
    )
    delivery_retry_backoff_s: float = Field(
        default=1.0, gt=0, description="Pause before a batch whose outputs failed is retried."
    )
    stall_after_s: float = Field(
        default=60.0,
        gt=0,
        description="/readyz fails (stockwatch_partition_stalled = 1) when a partition with work pending "
        "has not committed for this long.",
    )
    commit_interval_ms: int = Field(
        default=200,
        ge=0,
        description="At-least-once: commit acknowledged offsets at most this often (idle, shutdown "
        "and max-events always commit at once).",
    )

    # --- control plane ---
    control_key: SecretStr | None = None

    # --- retrain worker and control plane ---
    retrain_interval_s: float = Field(default=86_400.0, gt=0, description="Scheduled retrain period (daily).")
    retrain_cooldown_s: float = Field(
        default=60.0, ge=0, description="`retrain` commands this soon after a retrain are coalesced."
    )
    retrain_batch_size: int = Field(default=5000, ge=10, description="Mongo cursor batch size of snapshots.")
    retrain_progress_every: int = Field(default=100_000, ge=1, description="Log progress every N documents.")
    retrain_max_attempts: int = Field(
        default=3, ge=1, description="Attempts per retrain on Mongo/Kafka outages."
    )
    retrain_backoff_s: float = Field(
        default=5.0, ge=0, description="First retry pause; doubles each attempt."
    )
    retrain_contamination: float = Field(
        default=0.1, gt=0, le=0.5, description="IsolationForest contamination."
    )
    retrain_exclude_flagged: bool = Field(
        default=True, description="Leave items the consumer flagged (Mongo `anomalies`) out of training."
    )
    retrain_flagged_collection: str = Field(
        default="anomalies", description="Audit collection of flagged items."
    )
    retrain_exclude_filter: str | None = Field(
        default=None, description="Extra Mongo filter (JSON) of inventory documents to leave out of training."
    )
    gate_rate_tolerance: float = Field(
        default=0.5, gt=0, description="Training anomaly rate must lie in contamination * (1 +/- this)."
    )
    gate_max_rate_shift: float = Field(
        default=0.15, gt=0, le=1, description="Max |candidate - current| anomaly rate on the same sample."
    )
    gate_max_ks: float = Field(
        default=0.5, gt=0, le=1, description="Max KS distance between candidate and current scores."
    )
    gate_sample_size: int = Field(default=10_000, ge=10, description="Reservoir sample for the gate.")
    lease_ttl_s: float = Field(default=60.0, gt=1, description="Retrain lease expiry; renewed every ttl/3.")
    control_max_age_s: float = Field(
        default=300.0, gt=0, description="Commands older (or further in the future) than this are rejected."
    )
    ctl_timeout_s: float = Field(default=120.0, gt=0, description="How long `stockwatch ctl` waits.")
    control_group_id: str = Field(
        default="stockwatch-retrain-worker",
        description="Consumer group of the retrain workers on the control topic.",
    )
    worker_mongo_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Mongo server-selection/connect timeout of the retrain worker and scan.",
    )

    @model_validator(mode="after")
    def _client_limits(self) -> Settings:
        if self.kafka_client == "confluent-kafka" and self.max_poll_interval_ms < self.session_timeout_ms:
            raise ValueError(
                "kafka_client confluent-kafka needs max_poll_interval_ms >= session_timeout_ms "
                f"(got {self.max_poll_interval_ms} < {self.session_timeout_ms})"
            )
        return self

    @model_validator(mode="after")
    def _distinct_topics(self) -> Settings:
        outputs = [self.anomaly_topic, self.dlq_topic, self.status_topic]
        if self.decisions_topic:
            outputs.append(self.decisions_topic)
        if self.input_topic in outputs:
            raise ValueError(f"input_topic {self.input_topic!r} must differ from every output topic")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_file()))
