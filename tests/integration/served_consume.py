"""``python -m tests.integration.served_consume``: `stockwatch consume` serving the model store's CURRENT
version whichever its detector (``ModelStore.load_any``), while the model watcher loads seed models only.

Wired exactly as `stockwatch consume` (``build_service`` from the environment's settings), with
the version ``stockwatch train --detector default`` published; SIGTERM stops it.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from config import load_settings
from consumer.scoring.wiring import build_service
from detection import ModelStore
from tests.integration.state_consume import FixedWatcher


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    model = ModelStore(settings.models.dir).load_any()
    service = build_service(settings, watcher=FixedWatcher(model))  # type: ignore[arg-type]

    def stop(signum: int, _frame: FrameType | None) -> None:
        service.request_stop()

    signal.signal(signal.SIGTERM, stop)
    service.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
