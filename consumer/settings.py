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

DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent.parent / "config" / "stockwatch.toml"


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
    max_poll_records: int = Field(default=2000, ge=1)
    poll_timeout_ms: int = Field(default=100, ge=0)
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    model_poll_interval_s: float = Field(default=2.0, gt=0)
    http_port: int = Field(
        default=9400, ge=0, le=65535, description="Metrics, /healthz and /readyz; 0 = off."
    )
    audit_anomalies: bool = Field(default=False, description="Also write anomalies to Mongo `anomalies`.")

    # --- control plane ---
    control_key: SecretStr | None = None

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
