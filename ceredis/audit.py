"""``ceredis verify``: prove a batch ledger intact and reproducible.

The checks, in order (each finding names its line and learner):

1. integrity — every hash, the chain, the footer's count and Merkle root (``ledger``);
2. header — a CEREDIS batch ledger, with a referential that parses and matches its hash;
3. replay — every record recomputed from its own inputs with the *recorded*
   referential and compared byte for byte;
4. footer counts — ok / skipped / failed as the records say;
5. database (optional) — the run's rows hold the same learners, hashes and scores, and
   the run row the same Merkle root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ceredis.errors import CeredisError, ReplayError
from ceredis.outcome import Counts
from ceredis.plan import LEDGER_KIND
from ceredis.record import replay_record
from ceredis.referential import Referential, bundled_referential, parse_referential
from ceredis.stores import StoredResult, parse_store_url
from ledger import VerifyReport, salvage_records, verify_ledger
from ledger.canonical import canonical

__all__ = ["Audit", "Finding", "audit_ledger"]


@dataclass(frozen=True)
class Finding:
    """One thing that does not hold: where, which learner, what kind, and what differs."""

    line: int | None
    agent_id: str | None
    kind: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "ledger"
        who = f", learner {self.agent_id}" if self.agent_id else ""
        return f"{where}{who}: {self.kind}: {self.message}"


@dataclass
class Audit:
    """The outcome of :func:`audit_ledger`."""

    path: Path
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: int = 0
    replayed: int = 0
    not_replayable: int = 0
    complete: bool = False
    results_root: str | None = None
    run_id: str | None = None
    database_rows: int | None = None

    @property
    def ok(self) -> bool:
        """True when the ledger is complete, intact, reproducible (and matches the database)."""
        return self.complete and not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "ledger": str(self.path),
            "ok": self.ok,
            "complete": self.complete,
            "runId": self.run_id,
            "records": self.records,
            "replayed": self.replayed,
            "notReplayable": self.not_replayable,
            "resultsRoot": self.results_root,
            "databaseRows": self.database_rows,
            "notes": self.notes,
            "findings": [
                {"line": f.line, "agentId": f.agent_id, "kind": f.kind, "message": f.message}
                for f in self.findings
            ],
        }


class _Recorded(NamedTuple):
    """What the database check needs of one ledger record."""

    line: int
    agent_id: str | None
    content_hash: str
    result: dict[str, Any]


def audit_ledger(path: Path, database: str | None = None) -> Audit:
    """Run every check on the ledger at *path* (and the database at *database*).

    Raises ReplayError when the file is not a readable CEREDIS ledger at all.
    """
    path = Path(path)
    audit = Audit(path)
    integrity = _check_integrity(audit)
    referential = _check_header(audit, integrity.header)
    counts, recorded = _replay(audit, referential, keep=database is not None)
    _check_footer_counts(audit, integrity.footer, counts)
    if database is not None:
        _check_database(audit, database, recorded, audit.results_root)
    return audit


def _check_integrity(audit: Audit) -> VerifyReport:
    """(1) Every hash, the chain, the footer's count and Merkle root; returns the check."""
    integrity = verify_ledger(audit.path)
    audit.complete = integrity.complete
    audit.results_root = integrity.root if integrity.complete else None
    for problem in integrity.problems:
        audit.findings.append(Finding(problem.line_no, None, problem.kind, problem.message))
    if not integrity.complete and not integrity.problems:
        audit.notes.append(
            "incomplete run: the ledger has no footer (the batch was interrupted); "
            f"finish it with `ceredis batch --resume {audit.path}`"
        )
    return integrity


def _check_header(audit: Audit, header: Any) -> Referential:
    """(2) A CEREDIS batch ledger whose referential parses and matches its hash."""
    path = audit.path
    if not isinstance(header, dict) or header.get("kind") != LEDGER_KIND:
        raise ReplayError(f"{path}: not a CEREDIS batch ledger (its header is not {LEDGER_KIND})")
    audit.run_id = header.get("runId")
    try:
        referential = parse_referential(header["referential"], f"{path} header referential")
    except (CeredisError, KeyError) as exc:
        raise ReplayError(f"{path}: the header's referential cannot be used: {exc}") from None
    if referential.hash != header.get("referentialHash"):
        audit.findings.append(
            Finding(
                1,
                None,
                "referential hash mismatch",
                f"the header's referential hashes to {referential.hash}, but the header says "
                f"{header.get('referentialHash')}",
            )
        )
    installed = bundled_referential()
    if referential.hash != installed.hash:
        audit.notes.append(
            f"the recorded referential {referential.id} ({referential.hash[:12]}…) differs "
            f"from the installed {installed.id} ({installed.hash[:12]}…); the recorded one "
            "was used for the replay"
        )
    return referential


def _replay(
    audit: Audit, referential: Referential, *, keep: bool
) -> tuple[Counts, list[_Recorded]]:
    """(3) Every record recomputed from its inputs and compared byte for byte; returns the
    statuses counted, and (when *keep*) what the database check needs of each record."""
    counts = Counts()
    recorded: list[_Recorded] = []
    for record in salvage_records(audit.path):
        body = record.body
        agent = body.get("agentId")
        audit.records += 1
        result = body.get("result") or {}
        counts.add(result.get("status"))
        if result.get("referentialHash") != referential.hash:
            audit.findings.append(
                Finding(
                    record.line_no,
                    agent,
                    "referential mismatch",
                    f"scored with referential {result.get('referentialHash')}, not the header's",
                )
            )
        recomputed = replay_record(body, referential)
        if recomputed is None:
            audit.not_replayable += 1
        else:
            audit.replayed += 1
            if canonical(recomputed) != record.body_bytes:
                audit.findings.append(
                    Finding(record.line_no, agent, "replay mismatch", _difference(body, recomputed))
                )
        if keep:
            recorded.append(_Recorded(record.line_no, agent, record.content_hash, result))
    return counts, recorded


def _check_footer_counts(audit: Audit, footer: Any, counts: Counts) -> None:
    """(4) The footer's ok / skipped / failed are what the records say."""
    if not (isinstance(footer, dict) and isinstance(footer.get("counts"), dict)):
        return
    expected = counts.by_status()
    said = {k: footer["counts"].get(k) for k in expected}
    if said != expected:
        audit.findings.append(
            Finding(
                None,
                None,
                "footer counts mismatch",
                f"the footer says {said}, the records say {expected}",
            )
        )


def _difference(recorded: Any, recomputed: Any, prefix: str = "") -> str:
    """The first few paths where two JSON values differ, with both values."""
    diffs: list[str] = []
    _walk(recorded, recomputed, prefix, diffs)
    shown = "; ".join(diffs[:5])
    return shown + (f"; … {len(diffs) - 5} more" if len(diffs) > 5 else "")


def _walk(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _walk(
                a.get(key, "<absent>"),
                b.get(key, "<absent>"),
                f"{path}.{key}" if path else key,
                out,
            )
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(x, y, f"{path}[{i}]", out)
    elif canonical(a) != canonical(b):
        out.append(f"{path}: recorded {_short(a)}, recomputed {_short(b)}")


def _short(value: Any) -> str:
    text = canonical(value).decode()
    return text if len(text) <= 80 else text[:77] + "…"


def _check_database(audit: Audit, url: str, recorded: list[_Recorded], root: str | None) -> None:
    """(5) The run's rows hold the same learners and hashes, the run row the same root."""
    stored = _stored_results(audit, url, root)
    if stored is None:
        return
    audit.database_rows = len(stored)
    for line, agent, content_hash, result in recorded:
        row = stored.get(agent)
        if str(result.get("error") or "").startswith("result store:"):
            continue  # recorded as not stored: the row is absent or kept from before
        if row is None:
            audit.findings.append(
                Finding(line, agent, "database: row missing", "no row for this learner in the run")
            )
        elif row.content_hash != content_hash:
            audit.findings.append(
                Finding(
                    line,
                    agent,
                    "database: hash mismatch",
                    f"row content hash {row.content_hash}, ledger {content_hash} (row status "
                    f"{row.status}, score {row.ceredis_score}; ledger {result.get('status')}, "
                    f"{result.get('ceredisScore')})",
                )
            )
    for agent in sorted(set(stored) - {r.agent_id for r in recorded}):
        audit.findings.append(
            Finding(
                None,
                agent,
                "database: extra row",
                "the run has a row for a learner the ledger does not hold",
            )
        )


def _stored_results(audit: Audit, url: str, root: str | None) -> dict[str, StoredResult] | None:
    """The run's stored rows by learner, after checking its run row (None: no run row)."""
    store = parse_store_url(url).open()
    try:
        run = store.get_run(audit.run_id or "")
        if run is None:
            audit.findings.append(
                Finding(
                    None,
                    None,
                    "database: run missing",
                    f"run {audit.run_id} is not in the database",
                )
            )
            return None
        if root is not None and run.results_root != root:
            audit.findings.append(
                Finding(
                    None,
                    None,
                    "database: root mismatch",
                    f"the run row says resultsRoot {run.results_root}, the ledger {root}",
                )
            )
        return {row.agent_id: row for row in store.iter_results(audit.run_id or "")}
    finally:
        store.close()
