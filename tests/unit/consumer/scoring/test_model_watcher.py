"""ModelWatcher (with an in-memory store) and the health state: pure logic, no Kafka."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from consumer.scoring.health import HealthState
from consumer.scoring.model_watcher import LOAD_SWITCH_INTERVAL_S, ModelWatcher, gil_yielding, warm_kernels
from detection import ModelNotFoundError, ModelVerificationError


@dataclass
class FakeModel:
    version: str
    threshold: float = 0.0


@dataclass
class FakeStore:
    current: str | None = None
    broken: set[str] = field(default_factory=set)
    flaky: int = 0  # this many OSErrors first
    loads: list[str] = field(default_factory=list)

    def current_version(self) -> str | None:
        return self.current

    def load_any(self, version: str | None = None) -> Any:
        assert version is not None
        self.loads.append(version)
        if self.flaky:
            self.flaky -= 1
            raise OSError("disk hiccup")
        if version in self.broken:
            raise ModelVerificationError(f"model {version}: checksum mismatch")
        if version == "gone":
            raise ModelNotFoundError("pruned")
        return FakeModel(version)


def test_nothing_published_means_nothing_to_take() -> None:
    watcher = ModelWatcher(FakeStore())
    assert not watcher.check()
    assert watcher.take() is None


def test_a_new_version_is_handed_over_once() -> None:
    store = FakeStore(current="v1")
    watcher = ModelWatcher(store)
    assert watcher.check()
    model = watcher.take()
    assert model is not None and model.version == "v1"
    assert watcher.take() is None
    assert not watcher.check()  # same version: not loaded again
    assert store.loads == ["v1"]
    store.current = "v2"
    assert watcher.check()
    assert watcher.take().version == "v2"  # type: ignore[union-attr]


def test_a_tampered_version_is_refused_once_and_counted() -> None:
    refusals: list[str] = []
    store = FakeStore(current="v1", broken={"v2"})
    watcher = ModelWatcher(store, on_refusal=refusals.append)
    watcher.check()
    assert watcher.take() is not None
    store.current = "v2"
    assert not watcher.check()
    assert not watcher.check()  # not retried
    assert watcher.take() is None  # the loop keeps serving v1
    assert refusals == ["verification"]
    assert "checksum mismatch" in watcher.refused["v2"]
    assert store.loads == ["v1", "v2"]


def test_transient_errors_are_retried_not_refused() -> None:
    refusals: list[str] = []
    store = FakeStore(current="v1", flaky=1)
    watcher = ModelWatcher(store, on_refusal=refusals.append)
    assert not watcher.check()
    assert watcher.check()
    assert refusals == []
    store.current = "gone"
    assert not watcher.check()
    assert refusals == [] and watcher.refused == {}


class Feed:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.closed = False

    def poll(self, timeout_s: float) -> list[dict[str, Any]]:
        out, self.messages = self.messages, []
        if not out:
            time.sleep(min(timeout_s, 0.01))
        return out

    def close(self) -> None:
        self.closed = True


def test_an_announcement_cuts_the_wait_short_and_stop_is_prompt() -> None:
    store = FakeStore(current="v1")
    feed = Feed()
    watcher = ModelWatcher(store, interval_s=60.0, announcements=feed)
    watcher.start()
    try:
        deadline = time.monotonic() + 5
        while watcher.take() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        store.current = "v2"
        feed.messages.append({"type": "model_published", "version": "v2"})
        deadline = time.monotonic() + 5
        while (model := watcher.take()) is None:
            assert time.monotonic() < deadline, "the announcement did not trigger a check"
            time.sleep(0.01)
        assert model.version == "v2"
    finally:
        started = time.monotonic()
        watcher.stop()
        assert time.monotonic() - started < 2
    assert feed.closed


def test_health_and_readiness() -> None:
    state = HealthState(stale_s=0.05)
    ok, _ = state.healthz()
    assert ok
    ready, body = state.readyz()
    assert not ready and body["missing"] == ["no partitions assigned", "waiting for a model"]
    state.assigned, state.model_version = 2, "v1"
    assert state.readyz()[0]
    time.sleep(0.06)
    assert not state.healthz()[0]
    state.tick()
    assert state.healthz()[0]


def test_a_load_runs_with_a_short_gil_switch_interval_which_is_restored() -> None:
    seen: list[float] = []

    class RecordingStore(FakeStore):
        def load_any(self, version: str | None = None) -> Any:
            seen.append(sys.getswitchinterval())
            return super().load_any(version)

    before = sys.getswitchinterval()
    store = RecordingStore(current="v1", broken={"v2"})
    watcher = ModelWatcher(store)
    assert watcher.check()
    store.current = "v2"
    assert not watcher.check()  # refused: the interval is restored on errors too
    assert seen == [LOAD_SWITCH_INTERVAL_S, LOAD_SWITCH_INTERVAL_S] and before > LOAD_SWITCH_INTERVAL_S
    assert sys.getswitchinterval() == before


def test_overlapping_loads_restore_the_original_interval() -> None:
    before = sys.getswitchinterval()
    first, second = gil_yielding(), gil_yielding()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first to start finishes first
    assert sys.getswitchinterval() == LOAD_SWITCH_INTERVAL_S  # the second still loads
    second.__exit__(None, None, None)
    assert sys.getswitchinterval() == before


def test_both_detectors_are_loaded_from_the_store_and_handed_over_as_current_moves(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from detection import (
        AnomalyModel,
        ChangeDetector,
        ModelStore,
        parse_item,
        parse_updates,
        train_detector,
        train_model,
    )
    from scripts.inventory_sim import SimConfig, simulate

    docs = simulate(SimConfig(seed=505, n_items=120, days=1))[0]
    store = ModelStore(tmp_path)
    default = store.publish(train_detector(parse_updates(docs)[0]))
    seed = store.publish(train_model([parse_item(d) for d in docs]))
    refusals: list[str] = []
    watcher = ModelWatcher(store, on_refusal=refusals.append)
    assert watcher.check()
    model = watcher.take()
    assert isinstance(model, AnomalyModel) and model.version == seed
    store.rollback(default)  # seed -> default
    assert watcher.check()
    model = watcher.take()
    assert isinstance(model, ChangeDetector) and model.version == default and model.forest is None
    store.rollback(seed)  # and back: a version seen before is still a swap
    assert watcher.check()
    assert isinstance(watcher.take(), AnomalyModel)
    assert refusals == [] and watcher.refused == {}


def test_the_model_is_warmed_up_before_the_loop_can_take_it() -> None:
    seen: list[tuple[str, object]] = []
    watcher: ModelWatcher

    def warm(model: Any) -> None:
        seen.append((model.version, watcher.take()))  # not handed over yet

    watcher = ModelWatcher(FakeStore(current="v1"), warm_up=warm)
    assert watcher.check()
    assert seen == [("v1", None)]
    model = watcher.take()
    assert model is not None and model.version == "v1"


def test_a_model_whose_warm_up_fails_is_refused_and_never_handed_over() -> None:
    def warm(model: Any) -> None:
        raise ValueError("kernel rejected the model's arrays")

    refusals: list[str] = []
    watcher = ModelWatcher(FakeStore(current="v1"), warm_up=warm, on_refusal=refusals.append)
    assert not watcher.check()
    assert watcher.take() is None and refusals == ["load_error"]
    assert "kernel rejected" in watcher.refused["v1"]


def test_the_first_compilation_is_logged_with_its_cache_and_duration(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    import detection.warmup

    warmed: list[object] = []
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(detection.warmup, "warm_up", warmed.append)
    caplog.set_level(logging.INFO, logger="consumer.scoring.model_watcher")
    monkeypatch.setattr(detection.warmup, "kernels_compiled", lambda: False)
    warm_kernels(FakeModel("v1"))  # type: ignore[arg-type]  # an empty cache dir: compiled
    first, done = (r.getMessage() for r in caplog.records)
    assert first == f"compiling the scoring kernels (first run only; cached in {tmp_path})"
    assert done.startswith("scoring kernels ready in ") and done.endswith(" s")
    caplog.clear()
    (tmp_path / "detection_0a1b").mkdir()
    (tmp_path / "detection_0a1b" / "decide_kernel.decide_rows-189.py311.nbi").touch()
    warm_kernels(FakeModel("v1"))  # type: ignore[arg-type]
    assert caplog.records[0].getMessage() == f"loading the scoring kernels from numba's cache in {tmp_path}"
    caplog.clear()
    monkeypatch.setattr(detection.warmup, "kernels_compiled", lambda: True)
    warm_kernels(FakeModel("v2"))  # type: ignore[arg-type]
    assert caplog.records == [] and len(warmed) == 3  # still run (instant), not logged
