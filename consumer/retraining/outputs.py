"""What a decided retrain writes besides the store: the report PNG and a rejected candidate's files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import joblib
import orjson

from consumer.retraining.candidates import Candidate
from consumer.retraining.report import REPORT_FILE, render_report

__all__ = ["REJECTED_DIR", "keep_rejected", "write_report"]

log = logging.getLogger(__name__)

REJECTED_DIR = "rejected"


def write_report(path: Path, candidate: Candidate, name: str, *, promoted: bool) -> str | None:
    """The candidate's report PNG at ``path``; None (logged) when it cannot be drawn."""
    if candidate.report is None:
        return None
    try:
        return str(render_report(path, candidate.report(name, promoted, list(candidate.gate.reasons))))
    except Exception as exc:  # a report is informational; never fail a retrain on it
        log.warning("could not render the model report %s: %r", path, exc)
        return None


def keep_rejected(model_dir: Path, candidate_id: str, candidate: Candidate, *, keep: int) -> str | None:
    """The candidate's files under ``<model_dir>/rejected/<candidate_id>/`` (the newest ``keep`` stay)."""
    model = candidate.model
    if model is None:
        return None
    root = model_dir / REJECTED_DIR
    target = root / candidate_id
    target.mkdir(parents=True, exist_ok=True)
    joblib.dump({"scaler": model.scaler, "forest": model.forest}, target / "model.joblib")
    (target / "metadata.json").write_text(model.metadata.model_dump_json(indent=2))
    (target / "gate.json").write_bytes(orjson.dumps(candidate.gate.as_dict(), option=orjson.OPT_INDENT_2))
    report = write_report(target / REPORT_FILE, candidate, candidate_id, promoted=False)
    for old in sorted(p for p in root.iterdir() if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return report
