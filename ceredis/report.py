"""The batch report: counts, an exit-code policy, and the per-learner JSON report file.

The JSON report (``startedAt``, ``finishedAt``, ``total``, ``concurrency``, ``ok``,
``skipped``, ``failed``, ``details``) is streamed to disk as learners finish, so a
run of a million learners does not hold a million details in memory; it is renamed
into place when the run ends. Timings and worker ids live here, never in the ledger.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from ceredis.outcome import Counts, Outcome
from ceredis.private import create_private, private_dir
from ledger.canonical import canonical

__all__ = ["BatchReport", "ReportFile"]


@dataclass
class BatchReport:
    """Counts of a batch and its exit-code policy."""

    counts: Counts = field(default_factory=Counts)
    concurrency: int = 1
    elapsed: float = 0.0
    started_at: str = ""
    finished_at: str | None = None
    ledger: Path | None = None
    report: Path | None = None
    results_root: str | None = None
    run_id: str = ""
    completed: bool = False  # the ledger was already finished: only the rows were completed

    @property
    def total(self) -> int:
        return self.counts.total

    @property
    def ok(self) -> int:
        return self.counts.ok

    @property
    def skipped(self) -> int:
        return self.counts.skipped

    @property
    def failed(self) -> int:
        return self.counts.failed

    @property
    def rate(self) -> float:
        """Learners per second over the whole run."""
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def return_code(self) -> int:
        """0 when every learner is OK or SKIPPED, 1 when any failed."""
        return 1 if self.failed else 0

    def __str__(self) -> str:
        return (
            f"{self.total} learners: {self.ok} ok, {self.skipped} skipped, {self.failed} failed "
            f"({self.concurrency} workers, {self.elapsed:.1f} s, {self.rate:.1f} learners/s)"
        )


class ReportFile:
    """Writes the JSON report incrementally, then renames it into place."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._partial.unlink(missing_ok=True)  # an interrupted run's: created anew, private
        self._file: IO[bytes] = os.fdopen(create_private(self._partial), "wb")
        self._file.write(b'{"details":[')
        self._first = True

    def detail(self, outcome: Outcome) -> None:
        """Append one learner's line of the report."""
        duration = outcome.duration_ms
        entry: dict[str, Any] = {
            "agentId": outcome.agent_id,
            "status": outcome.status,
            "ceredisScore": outcome.score,
            "cecrlLevel": outcome.level,
            "workerId": outcome.worker,
            "durationMs": None if duration is None else Decimal(f"{duration:.3f}"),
            "error": outcome.error,
        }
        self._file.write(b"\n" if self._first else b",\n")
        self._first = False
        self._file.write(canonical(entry))

    def finish(self, report: BatchReport) -> Path:
        """Write the totals, close and move the report into place."""
        totals = {
            "runId": report.run_id,
            "startedAt": report.started_at,
            "finishedAt": report.finished_at,
            "total": report.total,
            "concurrency": report.concurrency,
            "ok": report.ok,
            "skipped": report.skipped,
            "failed": report.failed,
            "elapsedSeconds": Decimal(f"{report.elapsed:.3f}"),
            "ledger": str(report.ledger) if report.ledger else None,
            "resultsRoot": report.results_root,
        }
        self._file.write(b"\n]," + canonical(totals)[1:] + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._partial, self.path)
        return self.path

    def abandon(self) -> None:
        """Close without finishing (the run was interrupted); the partial file stays."""
        if not self._file.closed:
            self._file.close()
