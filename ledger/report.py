"""What verification reports: each problem (line, kind, message) and the overall outcome.

Produced by :func:`ledger.verify.verify_ledger`; the kinds are listed in docs/ledger.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Problem", "ProblemKind", "VerifyReport"]


class ProblemKind(StrEnum):
    """What is wrong with a line (or the file)."""

    MALFORMED = "malformed"  # not a ledger line
    TORN_TAIL = "torn-tail"  # last line cut short: a crash during a write
    NON_CANONICAL = "non-canonical"  # the body (so the line) is not canonical JSON
    CONTENT_HASH = "content-hash"  # body bytes do not hash to the line's "hash"
    CHAIN = "chain"  # "prev" is not the hash of the previous line
    DELETED = "deleted"  # lines missing before this one
    REORDERED = "reordered"  # the line belongs earlier
    DUPLICATED = "duplicated"  # a copy of an earlier line
    STRUCTURE = "structure"  # header/records/footer out of place, or a bad header/footer
    FOOTER_COUNT = "footer-count"  # the footer's record count is wrong
    FOOTER_ROOT = "footer-root"  # the footer's Merkle root is wrong
    ANCHOR = "anchor"  # disagrees with the (size, root) kept elsewhere


@dataclass(frozen=True)
class Problem:
    """One problem: where (1-based line number), what kind, and expected vs found."""

    line_no: int
    kind: ProblemKind
    message: str

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.kind}: {self.message}"


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify_ledger`."""

    path: str
    problems: list[Problem]
    complete: bool  # a footer closes the ledger
    count: int  # records read
    root: str  # RFC 6962 root over the records read, hex
    header: dict[str, Any] | None  # the application's header
    footer: dict[str, Any] | None  # the application's footer fields
    lines: int

    @property
    def ok(self) -> bool:
        """No problem found (an incomplete ledger can be ok)."""
        return not self.problems

    @property
    def status(self) -> str:
        """``ok``, ``incomplete`` (no footer, nothing wrong) or ``failed``."""
        if self.problems:
            return "failed"
        return "ok" if self.complete else "incomplete"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (as printed by ``python -m ledger verify --json``)."""
        return {
            "path": self.path,
            "status": self.status,
            "ok": self.ok,
            "complete": self.complete,
            "count": self.count,
            "root": self.root,
            "lines": self.lines,
            "problems": [
                {"line": p.line_no, "kind": str(p.kind), "message": p.message}
                for p in self.problems
            ],
        }
