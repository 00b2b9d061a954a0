"""Local evidence exports (JSON Lines or CSV), and the bundled sample cohort.

The parent process indexes a file once (:func:`index_evidence_file`) into an SQLite
file in the cache directory, keyed by the file's SHA-256; each worker then opens that
index read-only and fetches one learner with one query, instead of holding the whole
export in memory N times. A line that cannot be attributed to a learner (not JSON, no
``agentId``) stops the run before any work: scoring anyone while some record is
unaccounted for could score a learner on a subset of their evidence.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from ceredis.config import cache_dir
from ceredis.errors import EvidenceFileError, SourceError
from ceredis.evidence import FIELDS, RawEvidence, submitted
from ceredis.private import private_dir
from ledger.canonical import canonical

__all__ = [
    "BUNDLED_URI",
    "FileSource",
    "bundled_cohort",
    "bundled_roster",
    "file_sha256",
    "index_evidence_file",
    "read_evidence_file",
]

BUNDLED_URI = "bundled:"
_INDEX_VERSION = "1"
_MAX_REPORTED = 20


def bundled_cohort() -> Path:
    """The sample cohort shipped with the package (about 120 learners, JSON Lines)."""
    return Path(str(resources.files("ceredis.data").joinpath("cohort.jsonl")))


def bundled_roster() -> Path:
    """The bundled cohort's learner list, including learners without any evidence."""
    return Path(str(resources.files("ceredis.data").joinpath("cohort-agents.txt")))


def read_evidence_file(path: Path) -> Iterator[tuple[int, str | None, RawEvidence | str]]:
    """Yield ``(line, agentId, record)`` per record, or ``(line, None, problem)``."""
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
    with _open_text(path) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line, parse_float=Decimal, parse_constant=Decimal)
            except json.JSONDecodeError as exc:
                yield number, None, f"line {number}: not valid JSON ({exc.msg}, column {exc.colno})"
                continue
            if not isinstance(value, dict):
                found = type(value).__name__
                yield number, None, f"line {number}: expected a JSON object, found {found}"
                continue
            yield number, *_attribute(value, number)


def _read_csv(path: Path) -> Iterator[tuple[int, str | None, RawEvidence | str]]:
    with _open_text(path) as text:
        reader = csv.DictReader(text, strict=True)
        if reader.fieldnames is None:
            return
        missing = [f for f in ("evidenceId", "agentId", "rawScore") if f not in reader.fieldnames]
        if missing:
            raise EvidenceFileError(
                f"{path}: the CSV header lacks column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)} (expected {', '.join(FIELDS)})"
            )
        try:
            for row in reader:
                number = reader.line_num
                if None in row:
                    yield number, None, f"line {number}: more cells than header columns"
                    continue
                fields: dict[str, Any] = {
                    k: v for k, v in row.items() if k in FIELDS and v not in ("", None)
                }
                if "rawScore" in fields:
                    fields["rawScore"] = _csv_number(fields["rawScore"])
                yield number, *_attribute(fields, number)
        except csv.Error as exc:
            raise EvidenceFileError(f"{path} line {reader.line_num}: {exc}") from None


def _csv_number(text: str) -> Any:
    """A CSV cell as a Decimal when it is a number (``NaN`` included), else the text."""
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        return text


def _attribute(fields: dict[str, Any], number: int) -> tuple[str | None, RawEvidence | str]:
    agent = fields.get("agentId")
    if not isinstance(agent, str) or not agent.strip():
        return None, (f"line {number}: no agentId, so the record cannot be attributed to a learner")
    return agent, RawEvidence(fields, f"line {number}")


def _open_text(path: Path) -> io.TextIOWrapper:
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise EvidenceFileError(f"{path}: cannot open the evidence file ({exc.strerror})") from None


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
    problems: list[str] = []
    try:
        db = sqlite3.connect(temp)
        try:
            db.execute("CREATE TABLE evidence (agent_id TEXT, line INTEGER, record TEXT)")
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            rows = []
            for number, agent, record in read_evidence_file(path):
                if agent is None:
                    problems.append(str(record))
                    continue
                assert isinstance(record, RawEvidence)
                rows.append((agent, number, canonical(submitted(record)).decode()))
                if len(rows) >= 10_000:
                    db.executemany("INSERT INTO evidence VALUES (?, ?, ?)", rows)
                    rows.clear()
            db.executemany("INSERT INTO evidence VALUES (?, ?, ?)", rows)
            db.execute("CREATE INDEX evidence_agent ON evidence (agent_id, line)")
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
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return target, digest


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

    def __init__(self, path: Path, index: Path | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._index = index or index_evidence_file(self.path)[0]
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            uri = f"file:{self._index}?mode=ro&immutable=1"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        return self._db

    def fetch(self, agent_id: str) -> list[RawEvidence]:
        """The learner's records in file order."""
        try:
            rows = (
                self._connection()
                .execute(
                    "SELECT record FROM evidence WHERE agent_id = ? ORDER BY line", (agent_id,)
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise SourceError(f"{self.name}: cannot read the evidence index ({exc})") from None
        records = []
        for (text,) in rows:
            value = json.loads(text, parse_float=Decimal)
            records.append(RawEvidence(value["fields"], value["where"]))
        return records

    def agents(self) -> Iterator[str]:
        """Every learner with at least one record, sorted."""
        cursor = self._connection().execute(
            "SELECT DISTINCT agent_id FROM evidence ORDER BY agent_id"
        )
        for (agent,) in cursor:
            yield agent

    def ping(self) -> None:
        """Nothing to check: the file was indexed when the source was prepared."""

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
