"""Finds, verifies and loads new model versions off the poll loop, and hands them over.

A background thread checks the store's ``current_version()`` every ``interval_s`` and at once
when a signed ``{"type": "model_published", ...}`` announcement arrives on the status topic. A new
version of either detector is loaded (``load_any``: a seed ``AnomalyModel`` or a ``default``
``ChangeDetector``; the store verifies checksums / signature and builds it from plain arrays) in this thread;
the poll loop picks it up with :meth:`ModelWatcher.take` *between* batches, so a batch is always
scored by exactly one version. A version that fails verification is refused once, counted in
``stockwatch_model_refusals_total`` and never retried; the model already serving keeps serving.
Before the hand-over the model decides a scratch batch here (:func:`warm_kernels`), so numba's
first-run compilation never stalls the loop.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from consumer.scoring.serving import ServedModel
from detection import ModelNotFoundError, ModelVerificationError

__all__ = ["Announcements", "ModelSource", "ModelWatcher", "warm_kernels"]

log = logging.getLogger(__name__)

WAIT_SLICE_S = 0.5
# While a model loads here, the GIL changes hands every 0.5 ms instead of CPython's 5 ms: joblib
# unpickles in pure Python (~20 ms for 100 trees), and each time the poll loop's network wait
# ended during it, the loop waited up to a full switch interval for the GIL; an exactly-once batch
# has several such waits, so output paused for tens of ms at every swap (bench/hotswap.py).
LOAD_SWITCH_INTERVAL_S = 0.0005


class _SwitchInterval:
    """The process-wide switch interval, lowered while at least one load runs (nesting-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = 0.0

    @contextlib.contextmanager
    def lowered(self, interval_s: float) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, interval_s))
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:  # the last load to finish restores the interval
                    sys.setswitchinterval(self._saved)


_SWITCH = _SwitchInterval()


def gil_yielding(interval_s: float = LOAD_SWITCH_INTERVAL_S) -> contextlib.AbstractContextManager[None]:
    """Lower the interpreter's thread switch interval for the block; restored when the last
    concurrent block (several watchers in one process) ends."""
    return _SWITCH.lowered(interval_s)


class ModelSource(Protocol):
    """The part of ``detection.ModelStore`` the watcher needs."""

    def current_version(self) -> str | None: ...
    def load_any(self, version: str | None = None) -> Any: ...


class Announcements(Protocol):
    """A feed of status messages (``consumer.adapters.kafka.StatusListener``)."""

    def poll(self, timeout_s: float) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


class ModelWatcher:
    """Background loader. ``on_refusal(reason)`` is called once per refused version."""

    def __init__(
        self,
        store: ModelSource,
        *,
        interval_s: float = 2.0,
        announcements: Announcements | None = None,
        on_refusal: Callable[[str], None] | None = None,
        warm_up: Callable[[ServedModel], object] | None = None,
    ) -> None:
        self.store = store
        self.warm_up = warm_kernels if warm_up is None else warm_up
        self.interval_s = interval_s
        self.announcements = announcements
        self.on_refusal = on_refusal
        self._lock = threading.Lock()
        self._pending: ServedModel | None = None
        self._latest: str | None = None  # newest version loaded (handed over or pending)
        self._refused: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.first_check_done = threading.Event()  # set once the store has been looked at

    # ----------------------------------------------------------------- the loop's side

    def take(self) -> ServedModel | None:
        """The newly loaded model, once; None when nothing new arrived since the last call."""
        with self._lock:
            model, self._pending = self._pending, None
        return model

    @property
    def refused(self) -> dict[str, str]:
        """Refused versions and why."""
        with self._lock:
            return dict(self._refused)

    # ----------------------------------------------------------------- the thread

    def start(self) -> None:
        """Start the background thread (it checks the store at once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="stockwatch-model-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and close the announcement feed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self.announcements is not None:
            try:
                self.announcements.close()
            except Exception as exc:  # closing is best effort at shutdown
                log.warning("closing the status listener failed: %r", exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            finally:
                self.first_check_done.set()
            self._wait()

    def _wait(self) -> None:
        """Sleep ``interval_s``, or less: until stopped or a ``model_published`` announcement arrives."""
        deadline = time.monotonic() + self.interval_s
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            step = min(remaining, WAIT_SLICE_S)  # stop() never waits long for this thread
            if self.announcements is None:
                self._stop.wait(step)
                continue
            try:
                messages = self.announcements.poll(step)
            except Exception as exc:  # the store poll still works without announcements
                log.warning("status listener failed (%r); relying on the store poll", exc)
                self._stop.wait(step)
                continue
            published = [m for m in messages if m.get("type") == "model_published"]
            if published:
                log.info("model_published announcement for %s", published[-1].get("version"))
                return

    def check(self) -> bool:  # noqa: PLR0911 - one return per outcome reads best here
        """One look at the store; loads a new CURRENT. True when a new model is pending."""
        try:
            version = self.store.current_version()
        except ModelVerificationError as exc:
            self._refuse("CURRENT", "verification", exc)
            return False
        except OSError as exc:
            log.warning("cannot read the model store: %r", exc)
            return False
        with self._lock:
            if version is None or version == self._latest or version in self._refused:
                return False
        log.info("loading model %s", version)
        try:
            with gil_yielding():
                model = self.store.load_any(version)
        except ModelVerificationError as exc:
            self._refuse(version, "verification", exc)
            return False
        except ModelNotFoundError as exc:  # pruned or CURRENT moved: the next check sees the new one
            log.warning("model %s vanished while loading: %s", version, exc)
            return False
        except OSError as exc:  # transient I/O: try again next time
            log.warning("model %s could not be read: %r", version, exc)
            return False
        except Exception as exc:  # unpickling or shape errors are permanent for a version
            self._refuse(version, "load_error", exc)
            return False
        try:  # here, not at the loop's first batch: the loop keeps ticking (/healthz) meanwhile
            self.warm_up(model)
        except Exception as exc:  # a model that cannot decide a scratch batch cannot serve
            self._refuse(version, "load_error", exc)
            return False
        with self._lock:
            self._pending = model
            self._latest = version
        log.info("model %s (%s detector) verified and loaded; handing it over", version, _kind(model))
        if _kind(model) == "default" and not getattr(getattr(model, "rules", None), "names", True):
            log.warning("no rules: model %s was trained with an empty rules table and checks none", version)
        return True

    def _refuse(self, version: str, reason: str, exc: BaseException) -> None:
        message = f"{reason}: {exc}"
        with self._lock:
            if self._refused.get(version) == message:
                return  # already refused and reported
            self._refused[version] = message
        log.error("refused model %s (%s): %s; the serving model stays", version, reason, exc)
        if self.on_refusal is not None:
            self.on_refusal(reason)


def warm_kernels(model: ServedModel) -> None:
    """Compile (first run) or load from numba's cache the kernels ``model`` decides with, timed."""
    from detection.warmup import kernel_cache_dir, kernels_cached, kernels_compiled, warm_up

    if kernels_compiled():
        warm_up(model)  # compiled in this process already: instant
        return
    if kernels_cached():
        log.info("loading the scoring kernels from numba's cache in %s", kernel_cache_dir())
    else:
        log.info("compiling the scoring kernels (first run only; cached in %s)", kernel_cache_dir())
    started = time.perf_counter()
    warm_up(model)
    log.info("scoring kernels ready in %.1f s", time.perf_counter() - started)


def _kind(model: object) -> str:
    return str(getattr(getattr(model, "metadata", None), "detector", "seed"))
