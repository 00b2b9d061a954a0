"""A learner's outcome: its status, what a run reports of it, and the tally of statuses.

``Status`` is a ``StrEnum``: a result carries it as its ``"status"`` value, and it encodes
to the same JSON text (``"OK"``) and compares equal to the plain string read back from a
ledger or a database. Pure: no I/O, so the scoring core can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

__all__ = ["Counts", "Outcome", "Status"]


class Status(StrEnum):
    """What happened to one learner: scored, nothing to score, or not scored."""

    OK = "OK"
    SKIPPED = "SKIPPED"
    ERROR = "ERROR"


@dataclass
class Counts:
    """How many learners ended in each status; anything not OK or SKIPPED counts as failed."""

    ok: int = 0
    skipped: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.ok + self.skipped + self.failed

    def add(self, status: str | None) -> None:
        """Count one learner's status."""
        if status == Status.OK:
            self.ok += 1
        elif status == Status.SKIPPED:
            self.skipped += 1
        else:
            self.failed += 1

    def by_status(self) -> dict[str, int]:
        """``{"ok", "skipped", "failed"}``: what a ledger footer's counts are checked against."""
        return {"ok": self.ok, "skipped": self.skipped, "failed": self.failed}

    def to_json(self) -> dict[str, int]:
        """The ledger footer's ``counts``: the total and each status."""
        return {"total": self.total, **self.by_status()}


class Outcome(NamedTuple):
    """One learner's outcome, as a worker returns it to the parent (or a resume reads it).

    ``worker`` and ``duration_ms`` are None for a learner recorded by an earlier run;
    ``band`` and ``domains`` are the result's ``bandLevel`` and ``domainScores``, for the
    report (so the parent never parses the record back).
    """

    index: int
    agent_id: str
    status: str
    score: Decimal | None
    level: str | None
    record: bytes  # canonical ledger record body
    worker: int | None
    duration_ms: float | None
    error: str | None
    band: str | None = None
    domains: Mapping[str, Decimal | None] | None = None

    @classmethod
    def recorded(cls, index: int, body: Mapping[str, Any], record: bytes) -> Outcome:
        """The outcome a ledger record holds (a resumed run's earlier learners)."""
        result = body["result"]
        return cls(
            index,
            body["agentId"],
            result["status"],
            result["ceredisScore"],
            result["cecrlLevel"],
            record,
            None,
            None,
            result.get("error"),
            result.get("bandLevel"),
            result.get("domainScores"),
        )
