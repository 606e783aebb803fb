"""StockWatch settings and their defaults (``stockwatch.toml``, shipped inside this package)."""

from __future__ import annotations

from config.settings import DEFAULT_CONFIG_FILE, Settings, config_file

__all__ = ["DEFAULT_CONFIG_FILE", "Settings", "config_file"]
