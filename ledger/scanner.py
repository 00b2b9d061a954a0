"""The line-by-line checker of a ledger that verification, the reader, the writer and the
prover share: every problem, with its line number and kind, in one pass and constant memory.

For each line, in order:

    (1) framing: the line ends with a newline (a last line without one is a torn tail);
    (2) envelope: the line has the ``ledger/1`` shape (``ledger.line``);
    (3) canonical form: the body is canonical JSON, so the line is too;
    (4) content hash: SHA-256 of the stored body bytes equals ``hash``;
    (5) chain: ``prev`` equals SHA-256 of the previous line (64 zeros on line 1);
    (6) sequence: ``seq`` follows on, else the line was deleted, moved or copied;
    (7) structure: a header on line 1, records, a footer last and nothing after it;
    (8) Merkle: each record's content hash is a leaf (RFC 6962); the footer's count and
        ``resultsRoot`` must match the records before it;
    (9) anchor: with ``expected=(size, root)`` kept elsewhere, the first *size* records
        must have that root, which catches wholesale replacement; a ledger that ends at or
        before them without a footer was truncated.

Problems after the first may be consequences of it.
"""

from __future__ import annotations

import hashlib
from binascii import hexlify
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

from ledger.canonical import CANON_ID
from ledger.decode import check_canonical, is_fast_canonical, is_plain, parse
from ledger.errors import CanonicalError, LedgerFormatError
from ledger.line import (
    FORMAT_ID,
    GENESIS,
    HEADER,
    MAX_LINE,
    RECORD,
    Line,
    iter_lines,
    parse_line,
)
from ledger.merkle import EMPTY_ROOT, LEAF_PREFIX, CompactRange, leaf_hash
from ledger.report import Problem, ProblemKind

__all__ = ["Scanner", "scan", "scan_file"]

_sha256 = hashlib.sha256

_MAX_GAPS = 1000  # gaps kept open to tell a moved line from a deleted one
_BLOCK = 1 << 20  # bytes read at once by scan_file
# A record line's envelope around its body, as Scanner._run compares it.
_HASH, _KIND_PREV, _SEQ = b',"hash":"', b'","kind":"record","prev":"', b'","seq":'
_TAIL_SIZE = len(_HASH) + 64 + len(_KIND_PREV) + 64 + len(_SEQ)
_LAST_SEQ = 10**15 - 1  # seq has at most 15 digits (ledger.line)


def scan(path: str | PathLike[str], scanner: Scanner) -> Iterator[tuple[int, Line | None]]:
    """Feed every line of the file at *path* to *scanner*, yielding ``(line_no, line)``
    after each (``line`` is None if it did not parse); ``finish()`` runs at the end.

    The one scan loop of the package; an unreadable file raises LedgerFormatError.
    """
    try:
        with open(path, "rb") as stream:
            for line_no, offset, raw, last in iter_lines(stream):
                yield line_no, scanner.feed(line_no, offset, raw, last)
    except OSError as exc:
        raise LedgerFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    scanner.finish()


def scan_file(
    path: str | PathLike[str],
    expected: tuple[int, str] | None = None,
    read: Callable[[int], None] | None = None,
) -> Scanner:
    """Check every line of the file at *path*; the scanner holds the outcome.

    The same findings as :func:`scan`, faster: the file is read in blocks, and each
    regular record line takes :meth:`Scanner.feed_block`'s quick path. *read*, if given,
    hears the bytes read so far after each block.
    """
    scanner = Scanner(expected)
    try:
        with open(path, "rb") as stream:
            _scan_blocks(stream, scanner, read)
    except OSError as exc:
        raise LedgerFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    scanner.finish()
    return scanner


def _scan_blocks(stream: Any, scanner: Scanner, read: Callable[[int], None] | None) -> None:
    # Reads as iter_lines does, a block at a time: whole lines go to feed_block, except the
    # last one read so far, held back until the next read says whether it ends the file
    # (only the last line can be a torn tail); a line longer than MAX_LINE ends the scan.
    line_no, offset = 0, 0
    parts: list[bytes] = []  # the start of a line that no block read so far has ended
    pending = 0  # bytes in parts
    held: list[bytes] = []
    total = 0  # bytes read, for *read*
    while data := stream.read(_BLOCK):
        if read is not None:
            total += len(data)
            read(total)
        parts.append(data)
        pending += len(data)
        if b"\n" not in data and pending <= MAX_LINE:
            continue
        if held:
            line_no, offset = scanner.feed_line(line_no, offset, held.pop(), False)
        buffer = b"".join(parts)
        lines = buffer.split(b"\n")
        parts = [lines.pop()]
        pending = len(parts[0])
        if lines and max(map(len, lines)) > MAX_LINE:
            cut = next(i for i, line in enumerate(lines) if len(line) > MAX_LINE)
            line_no, offset = scanner.feed_block(lines[:cut], line_no, offset)
            scanner.feed(line_no + 1, offset, lines[cut][: MAX_LINE + 1], True)
            return
        held = lines[-1:]
        line_no, offset = scanner.feed_block(lines[:-1], line_no, offset, is_plain(buffer))
        if pending > MAX_LINE:
            break
    rest = b"".join(parts)[: MAX_LINE + 1]
    if held:
        line_no, offset = scanner.feed_line(line_no, offset, held[0], not rest)
    if rest:
        scanner.feed(line_no + 1, offset, rest, True)


def _ledger_part(body: bytes, own_keys: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    # Header and footer bodies are {"ledger": {...}, "meta": {...}}: the ledger's own fields
    # apart from the application's, so neither can shadow the other.
    value = parse(body)
    if not isinstance(value, dict) or set(value) != {"ledger", "meta"}:
        raise LedgerFormatError('body must have exactly the keys "ledger" and "meta"')
    own, meta = value["ledger"], value["meta"]
    if not isinstance(own, dict) or set(own) != own_keys or not isinstance(meta, dict):
        raise LedgerFormatError(
            f'"ledger" must be an object with exactly {sorted(own_keys)}, "meta" an object'
        )
    return own, meta


@dataclass
class Scanner:
    """The checker's state, fed one line at a time by :func:`scan`."""

    expected: tuple[int, str] | None = None
    problems: list[Problem] = field(default_factory=list)
    prev: str = GENESIS  # hash of the last line read
    count: int = 0  # records read
    tree: CompactRange = field(default_factory=CompactRange)
    header: dict[str, Any] | None = None
    footer: dict[str, Any] | None = None
    footer_line: int = 0
    lines: int = 0
    torn: tuple[int, int, int] | None = None  # (line_no, offset, length) of a torn tail
    max_seq: int = 0
    unreadable: int = 0  # malformed lines since the last line that parsed
    gaps: list[list[int]] = field(default_factory=list)  # [line_no, first seq, last seq]

    def report(self, line_no: int, kind: ProblemKind, message: str) -> None:
        """Record one problem."""
        self.problems.append(Problem(line_no, kind, message))

    def feed_line(self, line_no: int, offset: int, text: bytes, last: bool) -> tuple[int, int]:
        """:meth:`feed` for a whole line given without its newline; returns the next
        ``(line_no, offset)``."""
        self.feed(line_no + 1, offset, text + b"\n", last)
        return line_no + 1, offset + len(text) + 1

    def feed_block(
        self, lines: list[bytes], line_no: int, offset: int, plain: bool = False
    ) -> tuple[int, int]:
        """Check whole lines (without their newlines), none of them the file's last, that
        follow line *line_no* at byte *offset*; returns the next ``(line_no, offset)``.
        *plain*: the caller found no backslash and no exponent in them (``is_plain``).

        Runs of record lines that follow on in every respect are taken by :meth:`_run` in
        a few C calls each; any other line goes through :meth:`feed`, which says what is
        wrong with it, so the findings are those of feeding every line to :meth:`feed`.
        """
        at, end = 0, len(lines)
        while at < end:
            if self.header is not None and not self.footer_line and not self.unreadable:
                at, line_no, offset = self._run(lines, at, line_no, offset, plain)
            if at < end:
                line_no, offset = self.feed_line(line_no, offset, lines[at], False)
                at += 1
        self.lines = line_no
        return line_no, offset

    def _run(
        self, lines: list[bytes], at: int, line_no: int, offset: int, plain: bool
    ) -> tuple[int, int, int]:
        # Record lines from lines[at] while each parses, chains, has the next seq, hashes,
        # is canonical by the fast check and is short of the anchor; stops before the first
        # that does not (left to feed) and returns (its index, line_no, offset).
        # Such a line is known but for its body: its tail must be exactly the bytes it
        # would have (the body's hash, this kind, the previous line's hash, the next seq),
        # so it is compared whole instead of matched by LINE_PATTERN (which it would match).
        sha256, join, leaf = _sha256, b"".join, LEAF_PREFIX
        append, fast_canonical = self.tree.append, is_fast_canonical
        prev, seq, count = self.prev.encode(), self.max_seq, self.count
        stop = self.expected[0] - 1 if self.expected is not None else -1
        for at in range(at, len(lines)):  # noqa: B020 - resumes where the caller stopped
            text = lines[at]
            ending = b"%d}" % (seq + 1)
            cut = len(text) - _TAIL_SIZE - len(ending)
            body = text[8:cut]
            digest = sha256(body).digest()
            if (
                count == stop
                or seq >= _LAST_SEQ
                or len(text) >= MAX_LINE
                or not text.startswith(b'{"body":{')
                or text[cut - 1 : cut] != b"}"
                or text[cut:] != join((_HASH, hexlify(digest), _KIND_PREV, prev, _SEQ, ending))
                or not fast_canonical(body, plain)
            ):
                break
            prev, seq, count = hexlify(sha256(text).digest()), seq + 1, count + 1
            append(sha256(leaf + digest).digest())
            line_no, offset = line_no + 1, offset + len(text) + 1
        else:
            at = len(lines)
        self.prev, self.max_seq, self.count = prev.decode(), seq, count
        return at, line_no, offset

    def feed(self, line_no: int, offset: int, raw: bytes, last: bool) -> Line | None:
        """Check one line as stored (newline included); returns it parsed, if it parses."""
        self.lines = line_no
        # (1) framing
        if raw[-1:] != b"\n" or len(raw) > MAX_LINE:
            self._unframed(line_no, offset, raw)
            return None
        text = raw[:-1]
        line_hash = _sha256(text).hexdigest()
        prev, self.prev = self.prev, line_hash
        # (2) envelope
        try:
            line = parse_line(text)
        except LedgerFormatError as exc:
            self._unparsed(line_no, offset, raw, last, prev, exc)
            return None
        body, content_hash, kind, line_prev, seq = line
        # (3) canonical form: the fast check, else the general one says what is wrong
        if not is_fast_canonical(body):
            self._canonical(line_no, kind, body)
        # (4) content hash
        digest = _sha256(body).digest()
        if digest.hex() != content_hash:
            self._content_hash(line_no, kind, content_hash, digest)
        # (5) chain
        if line_prev != prev:
            self._chain(line_no, line_prev, prev)
        # (6) sequence; unreadable lines just before may have held the seqs skipped
        if self.max_seq < seq <= self.max_seq + 1 + self.unreadable:
            self.max_seq = seq
        else:
            self._sequence(line_no, seq, line_hash == prev, self.max_seq + self.unreadable)
        self.unreadable = 0
        # (7) structure, (8) Merkle, (9) anchor
        if self.footer_line:
            self.report(
                line_no,
                ProblemKind.STRUCTURE,
                f"{kind} after the footer on line {self.footer_line}",
            )
        if kind == RECORD:
            self._record(line_no, digest)
        elif kind == HEADER:
            self._header(line_no, body)
        else:
            self._footer(line_no, body)
        return line

    def _unparsed(
        self, line_no: int, offset: int, raw: bytes, last: bool, prev: str, exc: LedgerFormatError
    ) -> None:
        if last:
            self.prev = prev  # a torn tail is not part of the chain
            self.torn = (line_no, offset, len(raw))
            self.report(line_no, ProblemKind.TORN_TAIL, f"last line is unreadable: {exc}")
        else:
            self.unreadable += 1  # it may hide a seq: see (6)
            self.report(line_no, ProblemKind.MALFORMED, str(exc))

    def _canonical(self, line_no: int, kind: str, body: bytes) -> None:
        try:
            check_canonical(body)
        except CanonicalError as exc:
            self.report(line_no, ProblemKind.NON_CANONICAL, f"{kind} body: {exc}")

    def _content_hash(self, line_no: int, kind: str, content_hash: str, digest: bytes) -> None:
        self.report(
            line_no,
            ProblemKind.CONTENT_HASH,
            f"{kind} hash says {content_hash}, body hashes to {digest.hex()}",
        )

    def _chain(self, line_no: int, line_prev: str, prev: str) -> None:
        self.report(
            line_no,
            ProblemKind.CHAIN,
            f"prev is {line_prev}, expected {prev}"
            + (" (line 1 must have 64 zeros)" if line_no == 1 else " (previous line's hash)"),
        )

    def _record(self, line_no: int, digest: bytes) -> None:
        self.count += 1
        self.tree.append(leaf_hash(digest))
        if line_no == 1:
            self.report(line_no, ProblemKind.STRUCTURE, "line 1 is a record, not the header")
        if self.expected is not None and self.count == self.expected[0]:
            self._anchor(line_no)

    def _unframed(self, line_no: int, offset: int, raw: bytes) -> None:
        if len(raw) > MAX_LINE:
            self.report(
                line_no, ProblemKind.MALFORMED, f"longer than {MAX_LINE} bytes; reading stops"
            )
        else:  # only the last line can lack a newline
            self.torn = (line_no, offset, len(raw))
            self.report(
                line_no,
                ProblemKind.TORN_TAIL,
                f"last line has no newline: {len(raw)} bytes of an unfinished write",
            )

    def _sequence(self, line_no: int, seq: int, copy_of_previous: bool, accounted: int) -> None:
        # seq did not follow on: a gap (deleted, or moved later), or a seq seen before.
        top = self.max_seq
        if seq > top:
            if len(self.gaps) < _MAX_GAPS:
                self.gaps.append([line_no, accounted + 1, seq - 1])
            else:
                self._deleted(line_no, accounted + 1, seq - 1)
            self.max_seq = seq
        else:
            for gap in self.gaps:
                _, first, last = gap
                if first <= seq <= last:
                    self.report(
                        line_no,
                        ProblemKind.REORDERED,
                        f"seq {seq} comes after seq {top}: moved from before line {gap[0]}",
                    )
                    if seq == first:
                        gap[1] += 1
                    elif seq == last:
                        gap[2] -= 1
                    else:
                        self.gaps.append([gap[0], seq + 1, last])
                        gap[2] = seq - 1
                    return
            same = ", a copy of the line before it" if copy_of_previous else ""
            self.report(line_no, ProblemKind.DUPLICATED, f"seq {seq} was already read{same}")

    def _deleted(self, line_no: int, first: int, last: int) -> None:
        n = last - first + 1
        seqs = f"seq {first}" if n == 1 else f"seq {first}–{last}"
        self.report(
            line_no,
            ProblemKind.DELETED,
            f"{n} line{'s' * (n > 1)} missing before this one ({seqs})",
        )

    def _header(self, line_no: int, body: bytes) -> None:
        if line_no != 1 or self.header is not None:
            self.report(line_no, ProblemKind.STRUCTURE, "a header must be line 1, and only line 1")
            return
        try:
            own, meta = _ledger_part(body, {"canon", "format"})
        except (LedgerFormatError, CanonicalError) as exc:
            self.report(line_no, ProblemKind.STRUCTURE, f"header: {exc}")
            return
        if own["format"] != FORMAT_ID or own["canon"] != CANON_ID:
            self.report(
                line_no,
                ProblemKind.STRUCTURE,
                f"header declares format {own['format']!r}, canon {own['canon']!r}; "
                f"expected {FORMAT_ID!r}, {CANON_ID!r}",
            )
        self.header = meta

    def _footer(self, line_no: int, body: bytes) -> None:
        if line_no == 1:
            self.report(line_no, ProblemKind.STRUCTURE, "line 1 is the footer, not the header")
        if self.footer_line:
            return  # already reported as "after the footer"
        self.footer_line = line_no
        try:
            own, meta = _ledger_part(body, {"count", "resultsRoot"})
        except (LedgerFormatError, CanonicalError) as exc:
            self.report(line_no, ProblemKind.STRUCTURE, f"footer: {exc}")
            self.footer = {}
            return
        self.footer = meta
        if type(own["count"]) is not int or own["count"] != self.count:
            self.report(
                line_no,
                ProblemKind.FOOTER_COUNT,
                f"footer count is {own['count']}, expected {self.count} (records read)",
            )
        root = self.tree.root().hex()
        if own["resultsRoot"] != root:
            self.report(
                line_no,
                ProblemKind.FOOTER_ROOT,
                f"footer resultsRoot is {own['resultsRoot']}, expected {root}",
            )

    def _anchor(self, line_no: int) -> None:
        assert self.expected is not None
        size, root = self.expected
        found = self.tree.root().hex() if size else EMPTY_ROOT.hex()
        if found != root:
            self.report(
                line_no,
                ProblemKind.ANCHOR,
                f"root of the first {size} records is {found}, the anchor says {root}",
            )

    def finish(self) -> None:
        """Close the pass: pending gaps become deletions; anchor and header checks."""
        for line_no, first, last in self.gaps:
            if first <= last:
                self._deleted(line_no, first, last)
        self.gaps.clear()
        if self.lines == 0:
            self.report(1, ProblemKind.STRUCTURE, "empty file: no header")
        elif self.header is None and not any(p.line_no == 1 for p in self.problems):
            self.report(1, ProblemKind.STRUCTURE, "no header on line 1")
        if self.expected is not None:
            size, _ = self.expected
            if size == 0:
                self._anchor(1)
            if self.count < size:
                self.report(
                    self.lines + 1,
                    ProblemKind.ANCHOR,
                    f"the anchor says {size} records, the ledger holds {self.count}: truncated",
                )
            elif self.count == size and self.footer is None:
                self.report(
                    self.lines + 1,
                    ProblemKind.ANCHOR,
                    f"the ledger stops after the {size} anchored records without a footer: "
                    "truncated (or the run has not finished)",
                )
        self.problems.sort(key=lambda p: p.line_no)
