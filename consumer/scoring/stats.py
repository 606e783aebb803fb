"""What one run of the scoring loop did (:class:`RunStats`, returned by ``ScoringService.run``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from consumer.scoring.batch import BatchResult

__all__ = ["RunStats"]


@dataclass
class RunStats:
    """What one :meth:`ScoringService.run` did."""

    events_in: int = 0
    scored: int = 0
    anomalies: int = 0
    dead_letters: int = 0
    batches: int = 0
    delivery_failures: int = 0
    parked: int = 0
    model_versions: list[str] = field(default_factory=list)
    stopped_by: str = ""
    final_commit: bool = True  # False: the last offsets could not be committed (they are redelivered)
    final_error: str = ""  # why not, when known

    def add(self, result: BatchResult) -> None:
        """Count a settled batch."""
        self.batches += 1
        self.events_in += result.n_in
        self.scored += result.n_valid
        self.anomalies += result.n_anomalies
        self.dead_letters += result.n_in - result.n_valid
