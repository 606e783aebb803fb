"""StockWatch settings: one flat, frozen pydantic model read once at the entry point, seen through slices.

Sources, strongest first: keyword arguments (tests), environment variables (``STOCKWATCH_*``),
the TOML config file (``STOCKWATCH_CONFIG``, default the ``stockwatch.toml`` shipped in this
package), then the defaults below. The flat names are the user's (variables, TOML keys); the
code gets frozen slices per concern (:mod:`config.groups`, :mod:`config.kafka`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config import checks, groups
from config.context import ContextFields, ContextSettings
from config.groups import LogLevel, mask_uri
from config.kafka import RESERVED_PROPERTIES, Delivery, KafkaClient, KafkaSettings, OffsetReset
from config.kafka_security import KafkaSecurity, SaslMechanism, SecurityProtocol, security_problems
from config.keys import SECRET_FIELDS, check_key
from config.peer_group import PeerGroupField
from config.rules import RuleSpec, check_rules
from config.slices import SliceOf
from config.sources import DEFAULT_CONFIG_FILE, CheckedEnvSource, ConfigFileSource, config_file

__all__ = ["DEFAULT_CONFIG_FILE", "SECRET_FIELDS", "Settings", "config_file"]


class Settings(BaseSettings, ContextFields):
    """Every knob of the services, flat. Env names are ``STOCKWATCH_`` + the field name in capitals;
    code reads the frozen slices (:attr:`kafka`, :attr:`mongo`, …) rather than the flat fields
    (the event-context fields are inherited from :class:`config.context.ContextFields`)."""

    model_config = SettingsConfigDict(
        env_prefix="STOCKWATCH_",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
        hide_input_in_errors=True,  # a refused value may be a key: errors never echo it
        allow_inf_nan=False,  # "inf" would switch a bound off (future_skew_s), "nan" compares False
        ignored_types=(SliceOf,),  # the slices are views, not fields
    )

    # --- connections (names fixed by the issues; users and scripts rely on them) ---
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_bootstrap_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How long a command waits to reach Kafka at start-up before it gives up.",
    )
    mongo_uri: str = "mongodb://127.0.0.1:27017"
    mongo_db: checks.MongoDbName = "warehouse"
    mongo_collection: checks.MongoCollectionName = "inventory"

    # --- topics ---
    input_topic: str = "inventory.stock-updates"
    anomaly_topic: str = "inventory.anomalies"
    dlq_topic: str = "inventory.stock-updates.dlq"
    control_topic: str = "stockwatch.control"
    status_topic: str = "stockwatch.status"
    decisions_topic: str | None = Field(
        default=None, description="When set, every decision (not only anomalies) is published here."
    )
    feedback_topic: str = Field(
        default="inventory.anomaly-feedback",
        description="Analyst labels (`stockwatch feedback`), keyed by episode id; read by the retrain worker.",
    )
    group_id: str = "stockwatch-scorer"
    output_partitions: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="Partitions of the output topics StockWatch creates (anomalies, DLQ, decisions); "
        "0 = as many as the input topic.",
    )
    replication_factor: int = Field(
        default=1,
        ge=1,
        le=32_767,
        description="Replication factor of the topics StockWatch creates; 1 fits the one-broker local "
        "stack, production wants 3 (with the broker's min.insync.replicas=2).",
    )

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
    detector: Literal["seed", "default"] = Field(
        default="default",
        description="What `train` fits: `default` (each update judged as a change of its item against "
        "its own history and peers, data-quality rules, an alert budget; `consume` keeps the per-item "
        "state) or `seed` (the original design: state features, contamination 0.1, bit-for-bit).",
    )
    alert_budget_per_1000: float = Field(  # = detection.DEFAULT_ALERT_BUDGET_PER_1000
        default=0.5, gt=0, le=500, description="`default` detector: model alerts per 1,000 normal updates."
    )
    rules: Annotated[tuple[RuleSpec, ...] | None, AfterValidator(check_rules)] = Field(
        default=None,
        description="The data-quality rules `train` binds into a `default` model (`[[rules]]` in the TOML "
        "file, a JSON list in the environment; unset: the built-in table). See config/rules.py.",
    )
    peer_group_field: PeerGroupField = Field(default="category", description=groups.HELP["peer_group_field"])

    # --- consumer loop ---
    delivery: Delivery = "at-least-once"
    max_poll_records: int = Field(default=2000, ge=1, le=1_000_000)
    poll_timeout_ms: int = Field(default=100, ge=0)
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    model_poll_interval_s: float = Field(default=2.0, gt=0)
    http_port: int = Field(
        default=9400, ge=0, le=65535, description="Metrics, /healthz and /readyz; 0 = off."
    )
    worker_http_port: int = Field(
        default=9401, ge=0, le=65535, description="The retrain worker's metrics, /healthz, /readyz; 0 = off."
    )
    audit_anomalies: bool = Field(default=False, description="Also write anomalies to Mongo `anomalies`.")

    # --- `stockwatch consume`: Kafka client tuning, delivery, health ---
    kafka_client: KafkaClient = Field(
        default="kafka-python",
        description="Client library of the consumer's hot path (input and outputs); confluent-kafka "
        "(librdkafka, `pip install 'stockwatch[confluent]'`) decodes records in C.",
    )
    auto_offset_reset: OffsetReset = Field(
        default="earliest", description="Where a group without committed offsets starts reading."
    )
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    max_partition_fetch_bytes: int = Field(
        default=8_388_608,
        ge=65_536,
        description="Fetch size per partition (raised to max_message_bytes + 64 KiB if smaller); "
        "8 MiB rather than the clients' 1 MiB to cut fetch round trips.",
    )
    max_decompressed_batch_bytes: int = Field(
        default=67_108_864, ge=1_048_576, description=groups.HELP["max_decompressed_batch_bytes"]
    )
    session_timeout_ms: int = Field(default=45_000, ge=1000)
    producer_linger_ms: int = Field(default=5, ge=0, description="Producer batching delay.")
    producer_batch_size: int = Field(default=131_072, ge=1024, description="Producer batch bytes.")
    transactional_id: str | None = Field(
        default=None,
        description="Exactly-once only: the producer's transactional.id; must be stable across restarts "
        "of one instance and distinct between instances (default: `<group_id>.<group_instance_id>` for "
        "a static member, else unique per process, `<group_id>.<hostname>.<pid>.<random>`).",
    )
    group_instance_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="Static group membership (`group.instance.id`): a restarted instance with the same id "
        "takes its partitions back at once instead of after a rebalance; distinct per instance.",
    )
    transaction_timeout_ms: int = Field(default=60_000, ge=1000)
    create_missing_topics: bool = Field(
        default=True, description="Create the output topics (anomalies, DLQ, decisions) if absent."
    )
    http_host: str = Field(
        default="127.0.0.1",
        description="Bind address of both services' metrics/health servers (0.0.0.0 in a container).",
    )
    health_stale_s: float = Field(
        default=30.0,
        gt=0,
        description="/healthz (of the consumer and of the worker) fails when the loop has not ticked for this long.",
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
    state_changelog_topic: checks.TopicTemplate = Field(
        default="{group_id}.{input_topic}.state",
        description=groups.HELP["state_changelog_topic"],
    )
    state_seed: groups.StateSeed = Field(
        default="snapshot",
        description=groups.HELP["state_seed"],
    )
    # alert episodes of the `default` detector (docs/consume.md § Alert episodes; help in config.groups)
    alert_mode: groups.AlertMode = Field(default="episodes", description=groups.HELP["alert_mode"])
    resolve_after: int = Field(
        default=3, ge=1, le=65535, description=groups.HELP["resolve_after"]
    )  # u2 count
    renotify_after_s: float = Field(
        default=0.0, ge=0, le=31_622_400, description=groups.HELP["renotify_after_s"]
    )
    suppressions_refresh_s: float = Field(
        default=10.0, gt=0, description=groups.HELP["suppressions_refresh_s"]
    )
    future_skew_s: float = Field(default=3_600.0, gt=0, description=groups.HELP["future_skew_s"])
    commit_interval_ms: int = Field(default=200, ge=0, description=groups.HELP["commit_interval_ms"])

    # --- Kafka security: every client of both transports (consumer, producers, admin, control, ctl) ---
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* protocols)."
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: checks.OptionalFile = Field(
        default=None, description="PEM CA bundle the broker's certificate is checked against (SSL, SASL_SSL)."
    )
    kafka_ssl_certfile: checks.OptionalFile = Field(
        default=None, description="PEM client certificate (mutual TLS)."
    )
    kafka_ssl_keyfile: checks.OptionalFile = Field(default=None, description="PEM key of kafka_ssl_certfile.")
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that the broker's certificate names the host connected to."
    )
    kafka_client_properties: checks.ClientProperties = Field(
        default_factory=dict,
        description="Further client properties (librdkafka's names; a JSON object in the environment, a "
        "TOML table in the file) for every client of both transports (README 'Kafka security').",
    )

    # --- control plane ---
    control_key: SecretStr | None = None

    # --- every command ---
    log_level: LogLevel = Field(
        default="INFO", description="Log level of every command (the --log-level flag wins)."
    )

    # --- retrain worker and control plane ---
    retrain_interval_s: float = Field(default=86_400.0, gt=0, description="Scheduled retrain period (daily).")
    retrain_cooldown_s: float = Field(default=60.0, ge=0, description=groups.HELP["retrain_cooldown_s"])
    retrain_batch_size: int = Field(default=5000, ge=10, description="Mongo cursor batch size of snapshots.")
    retrain_progress_every: int = Field(default=100_000, ge=1, description="Log progress every N documents.")
    retrain_max_attempts: int = Field(default=3, ge=1, description=groups.HELP["retrain_max_attempts"])
    retrain_backoff_s: float = Field(default=5.0, ge=0, description=groups.HELP["retrain_backoff_s"])
    retrain_contamination: float = Field(
        default=0.1, gt=0, le=0.5, description=groups.HELP["retrain_contamination"]
    )
    retrain_exclude_flagged: bool = Field(default=True, description=groups.HELP["retrain_exclude_flagged"])
    retrain_flagged_collection: checks.MongoCollectionName = Field(
        default="anomalies", description=groups.HELP["retrain_flagged_collection"]
    )
    retrain_exclude_filter: str | None = Field(
        default=None, description=groups.HELP["retrain_exclude_filter"]
    )
    gate_rate_tolerance: float = Field(default=0.5, gt=0, description=groups.HELP["gate_rate_tolerance"])
    gate_max_rate_shift: float = Field(
        default=0.15, gt=0, le=1, description=groups.HELP["gate_max_rate_shift"]
    )
    gate_max_ks: float = Field(default=0.5, gt=0, le=1, description=groups.HELP["gate_max_ks"])
    gate_max_alert_ratio: float = Field(default=3.0, ge=1, description=groups.HELP["gate_max_alert_ratio"])
    gate_max_recall_drop: float = Field(
        default=0.05, ge=0, le=1, description=groups.HELP["gate_max_recall_drop"]
    )
    gate_sample_size: int = Field(default=10_000, ge=10, description="Reservoir sample for the gate.")
    gate_min_labels: int = Field(default=20, ge=1, description=groups.HELP["gate_min_labels"])
    lease_ttl_s: float = Field(default=10.0, gt=1, description=groups.HELP["lease_ttl_s"])
    worker_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._-]{1,128}$", description=groups.HELP["worker_id"]
    )
    control_max_age_s: float = Field(default=300.0, gt=0, description=groups.HELP["control_max_age_s"])
    ctl_timeout_s: float = Field(default=120.0, gt=0, description="How long `stockwatch ctl` waits.")
    control_group_id: str = Field(
        default="stockwatch-retrain-worker", description=groups.HELP["control_group_id"]
    )
    notify_group_id: str = Field(default="stockwatch-notify", description=groups.HELP["notify_group_id"])
    notify_webhook: SecretStr | None = Field(default=None, description=groups.HELP["notify_webhook"])
    notify_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one webhook POST.")
    notify_max_backoff_s: float = Field(default=30.0, gt=0, description=groups.HELP["notify_max_backoff_s"])
    worker_mongo_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description=groups.HELP["worker_mongo_timeout_s"],
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("control_key", "model_signing_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        return check_key(str(info.field_name), value)

    @field_validator(*checks.TOPIC_FIELDS)
    @classmethod
    def _topic_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        return checks.topic_name(value, may_be_empty=info.field_name == "decisions_topic")  # "": unset

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """Rules across fields, first failure reported: timing limits, Kafka security, distinct topics."""
        checks.client_limits(self.kafka_client, self.max_poll_interval_ms, self.session_timeout_ms)
        checks.lease_limits(self.lease_ttl_s, self.worker_mongo_timeout_s)
        security = KafkaSecurity.model_validate(dict(self))
        for message, fields in security_problems(security, RESERVED_PROPERTIES):
            raise checks.conflict(message, *fields)  # the first; once fixed, the next is reported
        outputs = {"anomaly_topic": self.anomaly_topic, "dlq_topic": self.dlq_topic}
        outputs |= {"status_topic": self.status_topic, "feedback_topic": self.feedback_topic}
        if self.decisions_topic:
            outputs["decisions_topic"] = self.decisions_topic
        checks.distinct_topics(self.input_topic, outputs)
        changelog = checks.changelog_topic(
            self.state_changelog_topic, group_id=self.group_id, input_topic=self.input_topic
        )
        others = {"input_topic": self.input_topic, **outputs, "control_topic": self.control_topic}
        checks.changelog_apart(changelog, others)
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
        return (init_settings, CheckedEnvSource(settings_cls), ConfigFileSource(settings_cls))

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, mask_uri(value) if name == "mongo_uri" and isinstance(value, str) else value

    # --- the slices: rebuilt on each access, so ``model_copy(update=...)`` is seen by them ---
    kafka = SliceOf(KafkaSettings)  # broker, topics, client library, consumer/producer knobs
    mongo = SliceOf(groups.MongoSettings)  # URI, database, inventory collection, timeout
    models = SliceOf(groups.ModelSettings)  # the model store and hot-swap polling
    scoring = SliceOf(groups.ScoringSettings)  # `stockwatch consume` beyond its Kafka client
    http = SliceOf(groups.HttpSettings)  # the metrics and health server
    retrain = SliceOf(groups.RetrainSettings)  # the retrain worker
    gate = SliceOf(groups.GateSettings)  # the validation gate of retrained candidates
    control = SliceOf(groups.ControlSettings)  # the signed control plane and `stockwatch ctl`
    logs = SliceOf(groups.LogSettings)  # the log level of every command
    notify = SliceOf(groups.NotifySettings)  # the webhook bridge `stockwatch notify`
    context = SliceOf(ContextSettings)  # what travels with each anomaly event (config/context.py)
