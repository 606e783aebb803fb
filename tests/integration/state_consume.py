"""``python -m tests.integration.state_consume``: `stockwatch consume` serving the ``default`` detector.

The model store cannot serve a ``default`` detector yet, so this process wires the service exactly
as `stockwatch consume` does (``build_service``: Kafka source and sinks, the state's changelog and
its Mongo seed) and hands it a detector trained in process on the test snapshot (deterministic:
every process trains the same one). SIGTERM stops it like `stockwatch consume`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from config import load_settings
from consumer.scoring.wiring import build_service
from detection import ChangeDetector, parse_updates, train_detector
from tests.unit.consumer.scoring.state.stream import snapshot_docs


class FixedWatcher:
    """Hands out one detector, once (what ModelGate asks of a ModelWatcher)."""

    def __init__(self, detector: ChangeDetector) -> None:
        self._model: ChangeDetector | None = detector
        self.first_check_done = threading.Event()
        self.first_check_done.set()

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def take(self) -> ChangeDetector | None:
        model, self._model = self._model, None
        return model


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    detector = train_detector(parse_updates(snapshot_docs())[0]).with_version("20261201T000000Z-state000")
    service = build_service(load_settings(), watcher=FixedWatcher(detector))  # type: ignore[arg-type]

    def stop(signum: int, _frame: FrameType | None) -> None:
        service.request_stop()

    signal.signal(signal.SIGTERM, stop)
    service.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
