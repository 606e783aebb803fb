"""The alert rules and the dashboard only name metrics the services export, and every rule is tested.

A renamed metric would otherwise leave an alert that silently never fires (promtool cannot know
which names exist). The rules' behaviour itself is tested by `promtool test rules`
(deploy/prometheus/alerts_test.yml, run by `make rules-check`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from consumer.retraining.metrics import WorkerMetrics
from consumer.scoring.metrics import ConsumerMetrics

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "stockwatch.json"

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "info": ("_info",),
    "gauge": ("",),
}
_NAME = re.compile(r"\bstockwatch_[a-z0-9_]+")


def exported() -> set[str]:
    """Every sample name the two registries can expose (labelled series included, before first use)."""
    consumer = ConsumerMetrics()
    consumer.set_model_created(time.time())  # the model-age collector shows only with a model
    consumer.model.info({"version": "v1"})  # so does the model info
    names: set[str] = set()
    registry: CollectorRegistry
    for registry in (consumer.registry, WorkerMetrics().registry):
        for family in registry.collect():
            names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
    return names


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs(panels: list[dict[str, Any]]) -> Iterator[str]:
    for panel in panels:
        yield from (t["expr"] for t in panel.get("targets", []))
        yield from dashboard_exprs(panel.get("panels", []))


def test_alert_rules_name_only_exported_metrics() -> None:
    known = exported()
    used = {name for rule in rules() for name in _NAME.findall(rule["expr"])}
    assert used, "no stockwatch metric in the rules?"
    assert used - known == set()


def test_the_dashboard_names_only_exported_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = list(dashboard_exprs(board["panels"]))
    used = {name for expr in exprs for name in _NAME.findall(expr)}
    assert len(exprs) >= 20 and used - exported() == set()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_alert_has_a_firing_and_a_quiet_promtool_case() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for rule in rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c.get("exp_alerts") for c in mine), f"{rule['alert']}: no firing case"
        assert any(not c.get("exp_alerts") for c in mine), f"{rule['alert']}: no quiet case"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_a_renamed_metric_is_caught() -> None:
    assert "stockwatch_consumer_lag_records" in exported()
    assert "stockwatch_consumer_lag" not in exported()  # the old name: a rule using it would fail above
