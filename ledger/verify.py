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

from ledger.line import Line, encode_line
from ledger.report import VerifyReport
from ledger.scanner import Scanner, scan, scan_file

__all__ = ["PROGRESS_BYTES", "Progress", "verify_ledger"]

_HEX64 = re.compile("[0-9a-f]{64}")

#: ``progress(bytes_checked, total_bytes)``, called as verification goes.
Progress = Callable[[int, int], None]
PROGRESS_BYTES = 1 << 20  # progress is called about once per MiB checked, and at the end
_ENVELOPE = len(encode_line(b"", "0" * 64, "", "0" * 64, 0)) - 1  # a line less body, kind, seq


def verify_ledger(
    path: str | PathLike[str],
    expected: tuple[int, str] | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check every line of the ledger at *path*; optionally against a known (size, root),
    telling *progress* the bytes checked so far: at the start, about every
    :data:`PROGRESS_BYTES` and at the end."""
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
    """:func:`scan_file`, telling *progress* the bytes of the lines that parsed so far."""
    try:
        total = os.stat(path).st_size
    except OSError:
        total = 0  # scan says why it cannot read the file
    scanner = Scanner(expected)
    done, step = 0, PROGRESS_BYTES
    progress(done, total)
    for _, line in scan(path, scanner):
        if line is not None:
            done += _size(line)
            if done >= step:
                step = done + PROGRESS_BYTES
                progress(done, max(total, done))
    progress(max(total, done), max(total, done))
    return scanner


def _size(line: Line) -> int:
    """The stored length of a line that parsed (its envelope has a fixed shape)."""
    return _ENVELOPE + len(line.body) + len(line.kind) + len(str(line.seq))
