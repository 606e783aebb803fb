"""The consumer's metric names and label values follow the Prometheus conventions (issue 14, point 6)."""

from __future__ import annotations

import time
from collections import Counter

from consumer.adapters.kafka import DeliveryFailedError
from consumer.retraining.metrics import WorkerMetrics
from consumer.scoring.batch import BatchResult
from consumer.scoring.metrics import ConsumerMetrics


def batch(severities: list[str], version: str = "v1") -> BatchResult:
    anomalies = [{"severity": s, "item": {"item_id": f"i{i}"}} for i, s in enumerate(severities)]
    return BatchResult(
        outputs=[],
        n_in=10,
        n_valid=9,
        n_anomalies=len(anomalies),
        dlq_reasons=Counter({"invalid_json": 1}),
        anomalies=anomalies,
        model_version=version,
    )


def test_no_model_age_sample_while_no_model_is_known() -> None:
    metrics = ConsumerMetrics()
    text = metrics.render().decode()
    assert "stockwatch_model_age_seconds" not in text.replace("# HELP", "").replace("# TYPE", "").split()
    assert metrics.registry.get_sample_value("stockwatch_model_age_seconds") is None
    assert metrics.registry.get_sample_value("stockwatch_model_created_timestamp_seconds") is None
    created = time.time() - 3600
    metrics.set_model_created(created)
    age = metrics.registry.get_sample_value("stockwatch_model_age_seconds")
    assert age is not None and 3599 <= age <= 3700  # computed at scrape time
    assert metrics.registry.get_sample_value("stockwatch_model_created_timestamp_seconds") == created
    metrics.set_model_created(None)
    assert metrics.registry.get_sample_value("stockwatch_model_age_seconds") is None


def test_anomalies_are_counted_per_severity_and_model_version() -> None:
    metrics = ConsumerMetrics()
    metrics.count_batch(batch(["low", "high", "high", "critical"]), decisions=False)
    metrics.count_batch(batch(["high"], version="v2"), decisions=False)

    def value(severity: str, version: str) -> float | None:
        return metrics.registry.get_sample_value(
            "stockwatch_anomalies_total", {"severity": severity, "model_version": version}
        )

    assert (value("low", "v1"), value("high", "v1"), value("critical", "v1")) == (1, 2, 1)
    assert value("high", "v2") == 1 and value("medium", "v1") is None
    assert metrics.registry.get_sample_value("stockwatch_dlq_total", {"reason": "invalid_json"}) == 2


def test_delivery_failures_are_labelled_by_kind_never_by_class_name() -> None:
    metrics = ConsumerMetrics()
    metrics.count_delivery_failure(DeliveryFailedError("KafkaTimeoutError('Batch expired')"))
    metrics.count_delivery_failure(DeliveryFailedError("something new"))
    text = metrics.render().decode()
    assert 'stockwatch_delivery_failures_total{kind="timeout"} 1.0' in text
    assert 'stockwatch_delivery_failures_total{kind="other"} 1.0' in text
    assert "Error" not in "".join(line for line in text.splitlines() if not line.startswith("#"))


def families(registry: object) -> dict[str, str]:
    return {m.name: m.type for m in registry.collect()}  # type: ignore[attr-defined]


def test_names_carry_units_and_counters_end_in_total() -> None:
    consumer, worker = ConsumerMetrics(), WorkerMetrics()
    consumer.set_model_created(time.time())
    for metrics in (consumer, worker):
        for name, kind in families(metrics.registry).items():
            assert name.startswith("stockwatch_"), name
            sample_names = {s.name for m in metrics.registry.collect() if m.name == name for s in m.samples}
            if kind == "counter":
                assert all(s.endswith(("_total", "_created")) for s in sample_names), name
            if kind == "histogram":
                assert name.endswith(("_seconds", "_records")), name
            assert not name.endswith(("_size", "_lag")), name
    assert "stockwatch_consumer_lag_records" in families(consumer.registry)
    assert "stockwatch_batch_records" in families(consumer.registry)


def test_no_model_info_sample_until_a_model_is_served() -> None:
    metrics = ConsumerMetrics()
    samples = [line for line in metrics.render().decode().splitlines() if not line.startswith("#")]
    assert not [line for line in samples if line.startswith("stockwatch_model_info")]
    assert metrics.registry.get_sample_value("stockwatch_model_info") is None
    assert metrics.registry.get_sample_value("stockwatch_model_loaded") == 0
    metrics.model.info({"version": "20260101T000000Z"})
    assert metrics.registry.get_sample_value("stockwatch_model_info", {"version": "20260101T000000Z"}) == 1
    metrics.model.info({"version": "v2"})  # a swap replaces the series, never adds a second one
    text = metrics.render().decode()
    assert [line for line in text.splitlines() if line.startswith("stockwatch_model_info")] == [
        'stockwatch_model_info{version="v2"} 1.0'
    ]
