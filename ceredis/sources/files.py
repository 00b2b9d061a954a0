"""Local evidence exports (JSON Lines or CSV), and the bundled sample cohort.

The parent process indexes a file once (:func:`index_evidence_file`) into an SQLite
file in the cache directory, keyed by the file's SHA-256; each worker then opens that
index read-only and fetches one learner with one query, instead of holding the whole
export in memory N times. The index holds one row per learner: the line numbers and the
records as canonical JSON texts, one per line of the row, in file order, marked
``plain`` when orjson reads every one back as the engine sees it (a flat object whose
every fraction is its float's shortest text: the engine reads a float through that
text): a plain learner is decoded by orjson in one call, any other exactly. When every
record of a learner is plainly valid but for the referential, the row also holds that
evidence and its ledger inputs (:class:`~ceredis.record.Prechecked`), so a run checks
only the referential and decodes the records only if the referential refuses one. A line
that cannot be attributed to a learner (not JSON, no ``agentId``) stops the run before
any work: scoring anyone while some record is unaccounted for could score a learner on
a subset of their evidence.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from importlib import resources
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from ceredis.config import cache_dir
from ceredis.errors import EvidenceFileError, NotInSource, SourceError
from ceredis.evidence import (
    FIELDS,
    OPTIONAL,
    RawEvidence,
    evidence_from_rows,
    evidence_rows,
    id_problem,
    prechecked_evidence,
    submitted,
)
from ceredis.exactjson import JSONError, loads, loads_each, utf8_text
from ceredis.exactjson import number as number_of
from ceredis.private import private_dir
from ceredis.record import Prechecked, evidence_inputs
from ledger.canonical import Fragment, canonical

__all__ = [
    "BUNDLED_URI",
    "FileSource",
    "bundled_cohort",
    "bundled_learners",
    "bundled_roster",
    "file_sha256",
    "index_evidence_file",
    "read_evidence_file",
]

BUNDLED_URI = "bundled:"
_INDEX_VERSION = "5"
_MAX_REPORTED = 20
_BOM = b"\xef\xbb\xbf"
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")


def bundled_cohort() -> Path:
    """The sample cohort shipped with the package (about 120 learners, JSON Lines)."""
    return Path(str(resources.files("ceredis.data").joinpath("cohort.jsonl")))


def bundled_roster() -> Path:
    """The bundled cohort's learner list, including learners without any evidence."""
    return Path(str(resources.files("ceredis.data").joinpath("cohort-agents.txt")))


def bundled_learners() -> frozenset[str]:
    """Every learner of the bundled cohort, those without evidence included."""
    lines = bundled_roster().read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def read_evidence_file(path: Path) -> Iterator[tuple[int, str | None, RawEvidence | str]]:
    """Yield ``(line, agentId, record)`` per record, or ``(line, None, problem)``.

    Raises EvidenceFileError for a problem of the whole file (type, CSV header).
    """
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from _read_jsonl(path)
    elif suffix == ".csv":
        yield from _read_csv(path)
    else:
        raise EvidenceFileError(
            f"{path}: unknown evidence file type {suffix or '(none)'!r}; use .jsonl or .csv"
        )


def _read_jsonl(path: Path) -> Iterator[tuple[int, str | None, RawEvidence | str]]:
    for number, offset, raw in _lines(path):
        body = raw.rstrip(b"\r\n")
        if not body.strip(b" \t"):
            continue
        try:
            value = loads(utf8_text(body), mark=True)
        except JSONError as exc:
            yield number, None, _problem(number, offset, exc)
            continue
        if not isinstance(value, dict):
            found = type(value).__name__
            yield number, None, f"line {number}: expected a JSON object, found {found}"
            continue
        yield number, *_attribute(value, number)


def _read_csv(path: Path) -> Iterator[tuple[int, str | None, RawEvidence | str]]:
    problems: list[str] = []
    reader = csv.reader(_text_lines(path, problems), strict=True)
    try:
        header = next((row for row in reader if row), None)
        if problems:
            raise EvidenceFileError(f"{path}: {problems[0][1]}")
        if header is None:
            return
        _check_header(path, header)
        for cells in reader:
            yield from ((n, None, p) for n, p in problems)
            problems.clear()
            if not cells:
                continue
            yield reader.line_num, *_csv_record(header, cells, reader.line_num)
    except csv.Error as exc:
        raise EvidenceFileError(f"{path} line {reader.line_num}: {exc}") from None
    yield from ((n, None, p) for n, p in problems)


def _check_header(path: Path, header: list[str]) -> None:
    """One error for the whole file when a column is doubled or a required one is missing."""
    doubled = sorted({name for name in header if header.count(name) > 1})
    missing = [name for name in FIELDS if name not in header and name not in OPTIONAL]
    if not doubled and not missing:
        return
    what = []
    if doubled:
        what.append(f"has the column{'s' if len(doubled) > 1 else ''} {', '.join(doubled)} twice")
    if missing:
        what.append(f"lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    raise EvidenceFileError(
        f"{path}: the CSV header {' and '.join(what)}; expected the header "
        f"{','.join(FIELDS)} ({' and '.join(OPTIONAL)} optional, other columns ignored)"
    )


def _csv_record(
    header: list[str], cells: list[str], number: int
) -> tuple[str | None, RawEvidence | str]:
    if len(cells) > len(header):
        return None, f"line {number}: more cells than header columns"
    fields: dict[str, Any] = {
        k: v for k, v in zip(header, cells, strict=False) if k in FIELDS and v != ""
    }
    if "rawScore" in fields:
        text = fields["rawScore"].strip()
        value = number_of(text, mark=True)
        fields["rawScore"] = text if value is None else value
    return _attribute(fields, number)


def _attribute(fields: dict[str, Any], number: int) -> tuple[str | None, RawEvidence | str]:
    agent = fields.get("agentId")
    if not isinstance(agent, str) or not agent.strip():
        return None, f"line {number}: no agentId, so the record cannot be attributed to a learner"
    if problem := id_problem("agentId", agent):
        return None, f"line {number}: {problem}, so the record cannot be attributed to a learner"
    return agent, RawEvidence(fields, f"line {number}")


def _problem(number: int, offset: int, exc: JSONError) -> str:
    where = f"line {number}"
    if exc.offset is not None:
        where += f" (byte {offset + exc.offset})"
    hint = "; the file must be UTF-8" if exc.reason.startswith("invalid UTF-8") else ""
    return f"{where}: {exc.reason}{hint}"


def _lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """``(number, byte offset, bytes)`` of each line; LF, CRLF and CR end lines.

    A UTF-8 byte-order mark at the start of the file is skipped.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise EvidenceFileError(f"{path}: cannot open the evidence file ({exc.strerror})") from None
    with f:
        number, offset = 0, 0
        for chunk in f:
            if offset == 0 and chunk.startswith(_BOM):
                chunk, offset = chunk[len(_BOM) :], len(_BOM)
            for piece in _LONE_CR.split(chunk):
                if piece:
                    number += 1
                    yield number, offset, piece
                    offset += len(piece)


def _text_lines(path: Path, problems: list[tuple[int, str]]) -> Iterator[str]:
    """The file's lines as text for the CSV reader; undecodable lines go to *problems*."""
    for number, offset, raw in _lines(path):
        try:
            yield utf8_text(raw)
        except JSONError as exc:
            problems.append((number, _problem(number, offset, exc)))
            yield raw.decode("utf-8", "replace")


def index_evidence_file(path: Path) -> tuple[Path, str]:
    """Build (or reuse) the SQLite index of an evidence file; return it and the file's digest.

    Raises EvidenceFileError listing the lines that cannot be attributed to a learner.
    """
    path = Path(path)
    digest = file_sha256(path)
    target = cache_dir() / "evidence-index" / f"{digest}-v{_INDEX_VERSION}{path.suffix}.sqlite"
    if target.exists():
        return target, digest
    private_dir(target.parent)
    fd, temp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    try:
        db = sqlite3.connect(temp)
        try:
            # A private temporary file: no journal, no sync until it is complete (below).
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            problems = _index_records(db, path)
            if not problems:  # else the file is refused below: no learner table to build
                _index_learners(db)
                db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
                db.execute("INSERT INTO meta VALUES ('sha256', ?)", (digest,))
                db.commit()
        finally:
            db.close()
        if problems:
            shown = "\n  ".join(problems[:_MAX_REPORTED])
            more = len(problems) - _MAX_REPORTED
            raise EvidenceFileError(
                f"{path}: {len(problems)} line{'s' if len(problems) > 1 else ''} cannot be "
                f"read, so no learner is scored from this file:\n  {shown}"
                + (f"\n  … and {more} more" if more > 0 else "")
            )
        with open(temp, "rb") as done:
            os.fsync(done.fileno())
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    _remove_older_versions(target, f"{digest}-v*{path.suffix}.sqlite")
    return target, digest


def _remove_older_versions(target: Path, pattern: str) -> None:
    """Remove the indexes of the same file that another engine version built."""
    for old in target.parent.glob(pattern):
        if old != target:
            with contextlib.suppress(FileNotFoundError):  # another run removed it first
                old.unlink()


def _index_records(db: sqlite3.Connection, path: Path) -> list[str]:
    """Each record of *path* as canonical JSON, in a temporary table (SQLite's own
    temporary file: created 0600, unlinked at once); the lines that cannot be
    attributed, as problems."""
    db.execute(
        "CREATE TEMP TABLE evidence (agent_id TEXT, line INTEGER, fields TEXT, plain INTEGER)"
    )
    problems, rows = [], []
    for number, agent, record in read_evidence_file(path):
        if agent is None:
            problems.append(str(record))
            continue
        assert isinstance(record, RawEvidence)
        text = canonical(submitted(record)["fields"]).decode()
        rows.append((agent, number, text, _reads_back(text)))
        if len(rows) >= 10_000:
            db.executemany("INSERT INTO evidence VALUES (?, ?, ?, ?)", rows)
            rows.clear()
    db.executemany("INSERT INTO evidence VALUES (?, ?, ?, ?)", rows)
    return problems


def _index_learners(db: sqlite3.Connection) -> None:
    """One row per learner from the records table: lines, texts (canonical JSON has no
    raw line break), whether every record is plain, and the prechecked evidence and its
    ledger inputs when there is one (:func:`_prechecked_columns`)."""
    db.execute("CREATE INDEX temp.evidence_agent ON evidence (agent_id, line)")
    db.execute(  # the short columns first: a run seldom reads past them
        "CREATE TABLE learners (agent_id TEXT PRIMARY KEY, evidence BLOB, inputs BLOB, "
        "plain INTEGER, lines TEXT, records TEXT) WITHOUT ROWID"
    )
    rows = db.execute("SELECT agent_id, line, fields, plain FROM evidence ORDER BY agent_id, line")
    for agent, group in itertools.groupby(rows, key=itemgetter(0)):
        _, numbers, texts, flags = zip(*group, strict=True)
        lines, records, plain = ",".join(map(str, numbers)), "\n".join(texts), all(flags)
        db.execute(
            "INSERT INTO learners VALUES (?, ?, ?, ?, ?, ?)",
            (
                agent,
                *_prechecked_columns(agent, _decoded(lines, records, plain)),
                plain,
                lines,
                records,
            ),
        )
    db.execute("DROP TABLE evidence")


def _prechecked_columns(agent: str, records: list[RawEvidence]) -> tuple[bytes | None, ...]:
    """The learner's prechecked evidence as JSON rows and its ledger inputs' canonical
    bytes, or two nulls when a record needs the full check (or a text cannot be encoded)."""
    evidence = prechecked_evidence(agent, records)
    inputs = evidence_inputs(evidence) if evidence is not None else None
    if not isinstance(inputs, Fragment):
        return None, None
    return orjson.dumps(evidence_rows(evidence)), bytes(inputs)


def _decoded(lines: str, records: str, plain: bool) -> list[RawEvidence]:
    """A learner's records from its index row, each located by its line."""
    if plain:
        values = orjson.loads("[" + records.replace("\n", ",") + "]")
    else:
        values = loads_each(records.split("\n"))
    return [
        RawEvidence(value, f"line {line}")
        for line, value in zip(lines.split(","), values, strict=True)
    ]


def _reads_back(text: str) -> bool:
    """Whether orjson reads a record's canonical *text* as the engine sees it: flat, and
    the same submitted form (floats read through their shortest repr) as *text* itself."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # a number beyond the range of a double
        return False
    if any(type(v) is dict or type(v) is list for v in value.values()):
        return False
    return canonical(submitted(RawEvidence(value))["fields"]).decode() == text


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise EvidenceFileError(f"{path}: cannot read the evidence file ({exc.strerror})") from None
    return digest.hexdigest()


class FileSource:
    """An evidence file, read through its index; one instance per worker process."""

    def __init__(
        self, path: Path, index: Path | None = None, known: frozenset[str] | None = None
    ) -> None:
        self.path = Path(path)
        self._known = known  # every learner, when the source can list them (bundled)
        self.name = self.path.name
        self._index = index or index_evidence_file(self.path)[0]
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            uri = f"file:{self._index}?mode=ro&immutable=1"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        return self._db

    def fetch(self, agent_id: str) -> Sequence[RawEvidence]:
        """The learner's records in file order; NotInSource for an id the source does not
        list (only when it knows every learner: an export cannot name those without evidence).
        """
        if self._known is not None and agent_id not in self._known:
            raise NotInSource(
                f"learner {agent_id!r} is not in the source {self.name}, which lists every "
                "learner it has: check the id"
            )
        row = self._row("evidence, inputs", agent_id)
        if row is None:
            return []
        evidence, inputs = row
        records = partial(self._row, "lines, records, plain", agent_id)
        if evidence is None:
            return _decoded(*records())
        prechecked = Prechecked(evidence_from_rows(agent_id, orjson.loads(evidence)), inputs)
        return _IndexedRecords(prechecked, records)

    def _row(self, columns: str, agent_id: str) -> tuple[Any, ...] | None:
        try:
            sql = f"SELECT {columns} FROM learners WHERE agent_id = ?"
            return self._connection().execute(sql, (agent_id,)).fetchone()
        except sqlite3.Error as exc:
            raise SourceError(f"{self.name}: cannot read the evidence index ({exc})") from None

    def agents(self) -> Iterator[str]:
        """Every learner with at least one record, sorted."""
        cursor = self._connection().execute("SELECT agent_id FROM learners ORDER BY agent_id")
        for (agent,) in cursor:
            yield agent

    def count(self) -> int:
        """How many learners :meth:`agents` lists (cheap: the index answers it)."""
        (number,) = self._connection().execute("SELECT COUNT(*) FROM learners").fetchone()
        return number

    def ping(self) -> None:
        """Nothing to check: the file was indexed when the source was prepared."""

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class _IndexedRecords(Sequence[RawEvidence]):
    """A learner's records from the index, decoded only when read: a run scores them
    from their :class:`Prechecked` form unless the referential refuses one."""

    __slots__ = ("_read", "_records", "prechecked")

    def __init__(self, prechecked: Prechecked, read: Callable[[], tuple[Any, ...]]) -> None:
        self.prechecked = prechecked
        self._read = read
        self._records: list[RawEvidence] | None = None

    def _all(self) -> list[RawEvidence]:
        if self._records is None:
            self._records = _decoded(*self._read())
        return self._records

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[RawEvidence]:
        return iter(self._all())
