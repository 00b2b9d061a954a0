"""Verification of a ledger file: every problem, with its line number and kind.

The checks and their order are those of :class:`ledger.scanner.Scanner`, run in one pass
and constant memory. A ledger without a footer is *incomplete* (a run that has not
finished, or crashed): not a problem in itself, but not ``ok and complete`` either.
"""

from __future__ import annotations

import re
from os import PathLike

from ledger.report import VerifyReport
from ledger.scanner import scan_file

__all__ = ["verify_ledger"]

_HEX64 = re.compile("[0-9a-f]{64}")


def verify_ledger(
    path: str | PathLike[str], expected: tuple[int, str] | None = None
) -> VerifyReport:
    """Check every line of the ledger at *path*; optionally against a known (size, root)."""
    if expected is not None:
        size, root = expected
        if type(size) is not int or size < 0 or not _HEX64.fullmatch(str(root).lower()):
            raise ValueError(f"expected must be (size >= 0, 64 hex digits), found {expected!r}")
        expected = (size, root.lower())
    scanner = scan_file(path, expected)
    return VerifyReport(
        path=str(path),
        problems=scanner.problems,
        complete=scanner.footer is not None,
        count=scanner.count,
        root=scanner.tree.root().hex(),
        header=scanner.header,
        footer=scanner.footer,
        lines=scanner.lines,
    )
