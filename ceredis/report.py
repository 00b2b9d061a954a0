"""The batch report: counts, an exit-code policy, and the per-learner JSON report file.

The JSON report (``startedAt``, ``finishedAt``, ``total``, ``concurrency``, ``ok``,
``skipped``, ``failed``, ``levels``, ``heldBelowBand``, the run's facts, ``details``) is
streamed to disk as learners finish, so a run of a million learners does not hold a
million details in memory; it is renamed into place when the run ends. Timings and
worker ids live here, never in the ledger.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ceredis import __version__
from ceredis.outcome import Counts, Outcome, Status
from ceredis.private import create_private, private_dir
from ledger.canonical import canonical, fast_canonical

if TYPE_CHECKING:
    from ceredis.plan import BatchPlan

__all__ = ["FAILURES_KEPT", "BatchReport", "ReportFile", "Tally", "run_facts"]

#: How many failed learners (with their reason) a report keeps for the summary.
FAILURES_KEPT = 20


def run_facts(plan: BatchPlan) -> dict[str, Any]:
    """What the report says about the run: engine, rules, source and store (no secret)."""
    return {
        "engineVersion": __version__,
        "referentialId": plan.referential.id,
        "referentialHash": plan.referential.hash,
        "source": plan.source.describe(),
        "store": plan.store.describe(),
    }


@dataclass
class Tally:
    """Learners per granted level, those held below their band, and the first failures."""

    levels: Counter[str] = field(default_factory=Counter)
    held: int = 0  # OK results whose granted level is below their score's band
    failures: list[tuple[str, str]] = field(default_factory=list)  # the first FAILURES_KEPT

    def add(self, outcome: Outcome, band: str | None) -> None:
        """Count one learner."""
        if outcome.status == Status.OK:
            self.levels[outcome.level or "?"] += 1
            self.held += band is not None and band != outcome.level
        elif outcome.status != Status.SKIPPED and len(self.failures) < FAILURES_KEPT:
            self.failures.append((outcome.agent_id, outcome.error or "no reason recorded"))

    def levels_json(self) -> dict[str, int]:
        """The per-level counts, lowest level first (``PRE_A2`` before ``A2`` before ``B1``)."""
        return dict(sorted(self.levels.items(), key=lambda item: _level_key(item[0])))


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
    facts: dict[str, Any] = field(default_factory=dict)  # see run_facts
    tally: Tally = field(default_factory=Tally)  # filled by ReportFile.finish
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

    def to_json(self, checkpoint: Path | None = None) -> dict[str, Any]:
        """The machine-readable summary ``batch --json`` prints (``checkpoint``: its path)."""
        return {
            "runId": self.run_id,
            "total": self.total,
            "ok": self.ok,
            "skipped": self.skipped,
            "failed": self.failed,
            "levels": self.tally.levels_json(),
            "heldBelowBand": self.tally.held,
            "failures": [{"agentId": a, "error": e} for a, e in self.tally.failures],
            "failuresNotShown": self.failed - len(self.tally.failures),
            "ledger": str(self.ledger) if self.ledger else None,
            "report": str(self.report) if self.report else None,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "resultsRoot": self.results_root,
            "elapsedSeconds": Decimal(f"{self.elapsed:.3f}"),
            "exitCode": self.return_code,
        }

    def __str__(self) -> str:
        return (
            f"{plural(self.total, 'learner')}: {self.ok} ok, {self.skipped} skipped, "
            f"{self.failed} failed ({plural(self.concurrency, 'worker')}, "
            f"{self.elapsed:.1f} s, {self.rate:.1f} learners/s)"
        )


def _level_key(level: str) -> tuple[str, bool]:
    """CECRL order: A1 < A2 < B1 …, each ``PRE_`` level just below its level."""
    return level.removeprefix("PRE_"), not level.startswith("PRE_")


def plural(count: int, noun: str) -> str:
    """``1 learner``, ``2 learners``, ``1,000 learners``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


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
        self.tally = Tally()

    def detail(self, outcome: Outcome) -> None:
        """Append one learner's line of the report."""
        duration = outcome.duration_ms
        self.tally.add(outcome, outcome.band)
        entry: dict[str, Any] = {
            "agentId": outcome.agent_id,
            "status": outcome.status,
            "ceredisScore": outcome.score,
            "bandLevel": outcome.band,
            "cecrlLevel": outcome.level,
            "domainScores": outcome.domains,
            "workerId": outcome.worker,
            "durationMs": None if duration is None else Decimal(f"{duration:.3f}"),
            "error": outcome.error,
        }
        self._file.write(b"\n" if self._first else b",\n")
        self._first = False
        self._file.write(fast_canonical(entry))

    def finish(self, report: BatchReport) -> Path:
        """Write the totals, close and move the report into place; hand *report* the tally."""
        report.tally = self.tally
        totals = {
            "runId": report.run_id,
            "startedAt": report.started_at,
            "finishedAt": report.finished_at,
            "total": report.total,
            "concurrency": report.concurrency,
            "ok": report.ok,
            "skipped": report.skipped,
            "failed": report.failed,
            "levels": self.tally.levels_json(),
            "heldBelowBand": self.tally.held,
            **report.facts,
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
