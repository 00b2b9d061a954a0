"""Streaming reader: the lines of a ledger as records, checked as they are read.

Each line passes the per-line checks of :mod:`ledger.scanner` (framing, envelope, canonical
form, content hash, chain, sequence, structure) before it is yielded; the first failure
raises :class:`LedgerFormatError`. For a report of every problem use ``verify_ledger``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from typing import Any, BinaryIO

from ledger.decode import parse
from ledger.errors import LedgerError, LedgerFormatError
from ledger.line import MAX_LINE, RECORD, Line, iter_lines, parse_line, sha256_hex
from ledger.scanner import Scanner, scan

__all__ = ["Record", "last_line", "read_ledger", "salvage_records"]


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


def last_line(path: str | PathLike[str]) -> Line | None:
    """The ledger's last line if it is whole and its envelope parses, else None; read from
    the end, so that asking whether a footer ends a file costs nothing per record. Only the
    envelope is checked: ``verify_ledger`` checks the rest."""
    try:
        with open(path, "rb") as stream:
            tail, start = _tail(stream)
    except OSError as exc:
        raise LedgerFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if start < 0 or not tail.endswith(b"\n"):
        return None
    try:
        return parse_line(tail[start:-1])
    except LedgerFormatError:
        return None


def _tail(stream: BinaryIO) -> tuple[bytes, int]:
    # The end of the file back to the newline before its last line: (bytes, where the last
    # line starts in them), or -1 for a last line longer than MAX_LINE.
    position = stream.seek(0, os.SEEK_END)
    blocks: list[bytes] = []  # read backwards, joined once: no copy per block
    size = 0
    while position > 0 and size <= MAX_LINE + 1:
        step = min(position, 1 << 16)
        position -= step
        stream.seek(position)
        block = stream.read(step)
        # the file's final byte (its newline, if whole) does not start the last line
        newline = block.rfind(b"\n", 0, len(block) - 1 if not blocks else len(block))
        blocks.append(block)
        size += step
        if newline >= 0:
            return b"".join(reversed(blocks)), newline + 1
    return b"".join(reversed(blocks)), 0 if position == 0 else -1


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
