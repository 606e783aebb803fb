"""Retries of a retrain: outages are retried with a doubling pause, anything else is not."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from consumer.ports import KafkaUnavailableError, MongoUnavailableError
from consumer.retraining.retrainer import RetrainConfig, Retrainer
from detection import ModelStore


class FlakyDB:
    """A snapshot source whose first ``outages`` reads fail; it holds no inventory at all."""

    def __init__(self, *, outages: int, error: Exception, registry_outages: int = 0) -> None:
        self.outages, self.error, self.registry_outages = outages, error, registry_outages
        self.reads = 0
        self.recorded: list[dict[str, Any]] = []

    def count_inventory(self) -> int:
        return 0

    def iter_inventory(self, *, batch_size: int, exclude: Mapping[str, Any] | None = None) -> Iterator[Any]:
        self.reads += 1
        if self.reads <= self.outages:
            raise self.error
        return iter(())

    def flagged_item_ids(self, collection: str) -> set[str]:
        return set()

    def labelled(self) -> list[dict[str, Any]]:
        return []

    def inventory_items(self, item_ids: Any) -> list[dict[str, Any]]:
        return []

    def record_version(self, doc: Mapping[str, Any]) -> None:
        if self.registry_outages > 0:
            self.registry_outages -= 1
            raise MongoUnavailableError("registry down")
        self.recorded.append(dict(doc))


def retrainer(db: FlakyDB, tmp_path: Path, sleeps: list[float]) -> Retrainer:
    return Retrainer(
        db=db,
        store=ModelStore(tmp_path),
        announce=lambda event: None,
        config=RetrainConfig(max_attempts=3, backoff_s=0.5),
        sleep=sleeps.append,
    )


@pytest.mark.parametrize("error", [MongoUnavailableError("down"), KafkaUnavailableError("down")])
def test_an_outage_is_retried_after_a_doubling_pause(tmp_path, error):
    db, sleeps = FlakyDB(outages=2, error=error), []
    out = retrainer(db, tmp_path, sleeps).run({"kind": "test"})
    assert (out.status, out.attempts, db.reads) == ("insufficient_data", 3, 3)
    assert sleeps == [0.5, 1.0]


def test_after_the_last_attempt_the_run_fails_and_is_recorded(tmp_path):
    db, sleeps = FlakyDB(outages=99, error=MongoUnavailableError("down")), []
    out = retrainer(db, tmp_path, sleeps).run({"kind": "test"})
    assert (out.status, out.attempts, db.reads) == ("failed", 3, 3)
    assert out.reasons == ["attempt 3/3 failed: down"]
    assert sleeps == [0.5, 1.0]  # no pause after the last attempt
    assert [doc["status"] for doc in db.recorded] == ["failed"]


def test_the_registry_write_is_retried_on_its_own_and_gives_up_quietly(tmp_path):
    db, sleeps = FlakyDB(outages=99, error=MongoUnavailableError("down"), registry_outages=99), []
    out = retrainer(db, tmp_path, sleeps).run({"kind": "test"})
    assert out.status == "failed" and db.recorded == []
    assert sleeps == [0.5, 1.0, 0.5, 1.0]  # the run's attempts, then the registry write's


def test_other_errors_are_not_retried(tmp_path):
    db, sleeps = FlakyDB(outages=1, error=ValueError("a bug")), []
    with pytest.raises(ValueError, match="a bug"):
        retrainer(db, tmp_path, sleeps).run({"kind": "test"})
    assert (db.reads, sleeps) == (1, [])
