"""Streaming reader: the lines of a ledger as records, checked as they are read.

Each line passes the per-line checks of :mod:`ledger.scanner` (framing, envelope, canonical
form, content hash, chain, sequence, structure) before it is yielded; the first failure
raises :class:`LedgerFormatError`. For a report of every problem use ``verify_ledger``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from typing import Any

from ledger.decode import parse
from ledger.errors import LedgerError, LedgerFormatError
from ledger.line import RECORD, iter_lines, parse_line, sha256_hex
from ledger.scanner import Scanner, scan

__all__ = ["Record", "read_ledger", "salvage_records"]


@dataclass(frozen=True)
class Record:
    """One line of a ledger: a header, a record or the footer."""

    line_no: int
    kind: str
    index: int | None  # position among the records (the Merkle leaf index); None otherwise
    body: dict[str, Any]  # numbers with a fraction are Decimal: re-encoding gives body_bytes
    body_bytes: bytes  # exactly as stored
    content_hash: str  # SHA-256 of body_bytes, hex


def read_ledger(path: str | PathLike[str]) -> Iterator[Record]:
    """Yield every line of the ledger at *path* in order; raise at the first bad line."""
    scanner = Scanner()
    for line_no, line in scan(path, scanner):
        if scanner.problems:  # a line that does not parse always reports one
            raise LedgerFormatError(f"{path}: {scanner.problems[0]}")
        assert line is not None
        yield Record(
            line_no=line_no,
            kind=line.kind,
            index=scanner.count - 1 if line.kind == RECORD else None,
            body=parse(line.body),
            body_bytes=line.body,
            content_hash=line.hash,
        )
    if scanner.problems:
        raise LedgerFormatError(f"{path}: {scanner.problems[0]}")


def salvage_records(path: str | PathLike[str]) -> Iterator[Record]:
    """Yield every record line that still parses, even in a damaged ledger.

    No chain, sequence or footer check is made (``verify_ledger`` reports those): this is
    for tools that must say something about each surviving record, such as a replay.
    ``content_hash`` is recomputed from the stored body bytes, not copied from the line.
    """
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise LedgerFormatError(f"{path}: cannot read: {exc.strerror}") from exc
    index = 0
    with stream:
        for line_no, _, raw, _ in iter_lines(stream):
            try:
                line = parse_line(raw.rstrip(b"\n"))
                body = parse(line.body) if line.kind == RECORD else None
            except LedgerError:
                continue
            if isinstance(body, dict):
                yield Record(line_no, RECORD, index, body, line.body, sha256_hex(line.body))
                index += 1
