"""The line format ``ledger/1``: JSON Lines, one canonical JSON envelope per line.

    {"body":<content>,"hash":"<sha256 hex>","kind":"<kind>","prev":"<sha256 hex>","seq":<n>}

* ``body``: the content, a canonical JSON object (``ledger.canonical``);
* ``hash``: SHA-256 of the body's bytes exactly as stored in the line;
* ``kind``: ``header`` (line 1), ``record`` (one per appended body) or ``footer`` (last);
* ``prev``: SHA-256 of the previous line's bytes, without its newline; 64 zeros on line 1;
* ``seq``: the line's own number, counted from 1 (it tells a deleted, a moved and a copied
  line apart; the chain alone only says "broken here").

Each line ends with one ``\\n``. The envelope is itself canonical JSON, and its keys sort so
that ``body`` comes first and the rest is a fixed-shape tail: a reader slices the stored
body bytes out of the line and hashes them, without re-serialising anything (hash the
bytes you store, as git's object ids do).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from ledger.errors import LedgerFormatError

__all__ = [
    "FOOTER",
    "FORMAT_ID",
    "GENESIS",
    "HEADER",
    "KINDS",
    "MAX_LINE",
    "RECORD",
    "Line",
    "encode_line",
    "iter_lines",
    "parse_line",
    "sha256_hex",
]

FORMAT_ID = "ledger/1"
GENESIS = "0" * 64
HEADER, RECORD, FOOTER = "header", "record", "footer"
KINDS = (HEADER, RECORD, FOOTER)
MAX_LINE = 64 << 20  # bytes; a longer line is not one this package wrote

_PREFIX = b'{"body":'
_HASH_KEY = b',"hash":"'
_TAIL = (
    rb',"hash":"([0-9a-f]{64})","kind":"(header|record|footer)"'
    rb',"prev":"([0-9a-f]{64})","seq":([1-9][0-9]{0,14})\}'
)
# The whole line at once, groups (body, hash, kind, prev, seq); the tail holds no ,"hash":"
# but its first, so the greedy body ends where the last one starts, as in the step-by-step
# check that explains a failure.
LINE_PATTERN = re.compile(rb'\{"body":(\{.*\})' + _TAIL, re.DOTALL)
_TAIL_AT = re.compile(_TAIL)


def sha256_hex(data: bytes) -> str:
    """SHA-256 of *data*, lowercase hex."""
    return hashlib.sha256(data).hexdigest()


class Line(NamedTuple):
    """One parsed line: the body's stored bytes and the envelope's fields."""

    body: bytes
    hash: str
    kind: str
    prev: str
    seq: int


def encode_line(body: bytes, content_hash: str, kind: str, prev: str, seq: int) -> bytes:
    """The stored bytes of one line, newline included."""
    return b"".join(
        (
            _PREFIX,
            body,
            b',"hash":"',
            content_hash.encode(),
            b'","kind":"',
            kind.encode(),
            b'","prev":"',
            prev.encode(),
            b'","seq":',
            b"%d}\n" % seq,
        )
    )


def parse_line(text: bytes) -> Line:
    """Split one line (without its newline) into body bytes and envelope fields, or raise."""
    match = LINE_PATTERN.fullmatch(text)
    if match is None:
        raise LedgerFormatError(_malformed(text))
    body, content_hash, kind, prev, seq = match.groups()
    return Line(body, content_hash.decode(), kind.decode(), prev.decode(), int(seq))


def _malformed(text: bytes) -> str:
    # What is wrong with a line that does not parse, checked part by part.
    if not text.startswith(_PREFIX):
        return f"does not start with {_PREFIX.decode()}"
    cut = text.rfind(_HASH_KEY)
    if cut <= len(_PREFIX) or _TAIL_AT.fullmatch(text, cut) is None:
        return (
            'does not end with ,"hash":"<64 hex>","kind":"header|record|footer",'
            '"prev":"<64 hex>","seq":<n>}'
        )
    return "body is not a JSON object"


def iter_lines(stream: BinaryIO) -> Iterator[tuple[int, int, bytes, bool]]:
    """Yield ``(line_no, offset, raw, is_last)``; *raw* keeps its newline if it has one.

    Reads one line ahead (so the last line is known as such) and never more than
    :data:`MAX_LINE` + 1 bytes at once: a longer line is yielded cut short and ends the
    iteration, which keeps memory bounded whatever the file holds.
    """
    readline = stream.readline
    limit = MAX_LINE + 1
    line_no, offset = 0, 0
    raw = readline(limit)
    while raw:
        line_no += 1
        if len(raw) == limit and not raw.endswith(b"\n"):
            yield line_no, offset, raw, True
            return
        following = readline(limit)
        yield line_no, offset, raw, not following
        offset += len(raw)
        raw = following
