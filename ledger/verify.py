"""Verification of a ledger file: every problem, with its line number and kind.

The checks and their order are those of :class:`ledger.scanner.Scanner`, run in one pass
and constant memory. A ledger without a footer is *incomplete* (a run that has not
finished, or crashed): not a problem in itself, but not ``ok and complete`` either.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from os import PathLike

from ledger.report import VerifyReport
from ledger.scanner import Scanner, scan_file

__all__ = ["Progress", "verify_ledger"]

_HEX64 = re.compile("[0-9a-f]{64}")

#: ``progress(bytes_read, total_bytes)``, called as verification goes.
Progress = Callable[[int, int], None]


def verify_ledger(
    path: str | PathLike[str],
    expected: tuple[int, str] | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check every line of the ledger at *path*; optionally against a known (size, root),
    telling *progress* the bytes read: 0 first, after each block read (1 MiB), the size last."""
    if expected is not None:
        size, root = expected
        if type(size) is not int or size < 0 or not _HEX64.fullmatch(str(root).lower()):
            raise ValueError(f"expected must be (size >= 0, 64 hex digits), found {expected!r}")
        expected = (size, root.lower())
    scanner = scan_file(path, expected) if progress is None else _scan(path, expected, progress)
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


def _scan(
    path: str | PathLike[str], expected: tuple[int, str] | None, progress: Progress
) -> Scanner:
    """:func:`scan_file`, telling *progress* the bytes read against the file's size."""
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0  # scan_file says why it cannot read the file
    read = [0]

    def heard(done: int) -> None:
        read[0] = done
        progress(done, max(size, done))

    progress(0, size)
    scanner = scan_file(path, expected, heard)
    progress(max(size, read[0]), max(size, read[0]))
    return scanner
