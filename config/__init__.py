"""StockWatch settings: flat names for users, frozen slices for code, defaults shipped in this package.

* :class:`Settings` — the flat model (``STOCKWATCH_<NAME>`` / TOML keys) and its slices
  (``settings.kafka``, ``.mongo``, ``.models``, ``.scoring``, ``.http``, ``.retrain``, ``.gate``,
  ``.control``, ``.notify``, ``.context``);
* :func:`load_settings` — read them at an entry point; every mistake becomes a :class:`SettingsError`;
* :func:`effective_settings` — each value (secrets masked) with its source, for `stockwatch config`;
* ``stockwatch.toml`` — the documented defaults (:data:`DEFAULT_CONFIG_FILE`).
"""

from __future__ import annotations

from config.errors import SettingsError
from config.groups import (
    ControlSettings,
    GateSettings,
    HttpSettings,
    LogSettings,
    ModelSettings,
    MongoSettings,
    NotifySettings,
    RetrainSettings,
    ScoringSettings,
    mask_uri,
)
from config.kafka import KafkaSettings, TopicSettings
from config.load import EffectiveSetting, effective_settings, load_settings, secret_values
from config.settings import SECRET_FIELDS, Settings
from config.sources import DEFAULT_CONFIG_FILE, config_file

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "SECRET_FIELDS",
    "ControlSettings",
    "EffectiveSetting",
    "GateSettings",
    "HttpSettings",
    "KafkaSettings",
    "LogSettings",
    "ModelSettings",
    "MongoSettings",
    "NotifySettings",
    "RetrainSettings",
    "ScoringSettings",
    "Settings",
    "SettingsError",
    "TopicSettings",
    "config_file",
    "effective_settings",
    "load_settings",
    "mask_uri",
    "secret_values",
]
