"""``ceredis verify``: prove a batch ledger intact and reproducible.

The checks, in order (each finding names its line and learner):

1. integrity — every hash, the chain, the footer's count and Merkle root (``ledger``);
2. header — a CEREDIS batch ledger, with a referential that parses and matches its hash;
3. replay — every record recomputed from its own inputs with the *recorded*
   referential and compared byte for byte;
4. footer counts — ok / skipped / failed as the records say;
5. learner list — the records' learners are the list the header (``--all``: the footer)
   binds, one by one against the ids or the roster file when it is on disk;
6. database (optional, :mod:`ceredis.audit_store`) — every row of the run holds what its
   ledger record holds, field by field, and so does every profile naming the run.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from ceredis.errors import CeredisError, ReplayError
from ceredis.outcome import Counts
from ceredis.plan import LEDGER_KIND
from ceredis.record import replay_record
from ceredis.referential import Referential, bundled_referential, parse_referential
from ceredis.report import plural
from ceredis.selection import LearnerList, Roster
from ceredis.sources.files import file_sha256
from ceredis.steps import Step, StepProgress, counted, integrity_progress
from ledger import (
    ProblemKind,
    Record,
    VerifyReport,
    canonical,
    decode,
    salvage_records,
    verify_ledger,
)

__all__ = ["Audit", "Finding", "audit_ledger"]


@dataclass(frozen=True)
class Finding:
    """One thing that does not hold: where, which learner, what kind, and what differs.

    ``consequence_of`` names the line whose change this finding only follows from (a chain
    break after an edited line, a footer root after any record change).
    """

    line: int | None
    agent_id: str | None
    kind: str
    message: str
    consequence_of: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "ledger"
        who = f", learner {self.agent_id}" if self.agent_id else ""
        then = (
            f" (a consequence of line {self.consequence_of}'s change)"
            if self.consequence_of is not None
            else ""
        )
        return f"{where}{who}: {self.kind}: {self.message}{then}"

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "agentId": self.agent_id,
            "kind": self.kind,
            "message": self.message,
            "consequenceOf": self.consequence_of,
        }


@dataclass
class Audit:
    """The outcome of :func:`audit_ledger`."""

    path: Path
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: int = 0
    identical: int = 0  # replayed to the very same bytes
    differed: int = 0  # replayed to other bytes (each one a finding)
    not_replayable: int = 0
    complete: bool = False
    recorded_root: str | None = None  # the footer's resultsRoot
    recomputed_root: str | None = None  # the root of the records as read
    run_id: str | None = None
    learner_list: str = "not bound"  # "header", "footer" or "not bound"
    database_rows: int | None = None
    profile_rows: int | None = None
    integrity: VerifyReport | None = field(default=None, repr=False)  # check 1, as made

    @property
    def replayed(self) -> int:
        return self.identical + self.differed

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
            "identical": self.identical,
            "differed": self.differed,
            "notReplayable": self.not_replayable,
            "resultsRoot": self.recorded_root,
            "recomputedRoot": self.recomputed_root,
            "learnerList": self.learner_list,
            "databaseRows": self.database_rows,
            "profileRows": self.profile_rows,
            "notes": self.notes,
            "findings": [f.to_json() for f in self.findings],
        }


class Recorded(NamedTuple):
    """What the later checks need of one ledger record."""

    line: int
    index: int
    agent_id: str | None
    content_hash: str
    result: dict[str, Any] | None  # kept for the database check only


Memo = dict[str, bytes | None]


def audit_ledger(
    path: Path,
    database: str | None = None,
    *,
    memo: Memo | None = None,
    progress: StepProgress | None = None,
) -> Audit:
    """Run every check on the ledger at *path* (and the database at *database*).

    *memo*, a dict kept across calls, skips replaying record bytes already replayed with
    the same referential (auditing many copies of one ledger); replay is a pure function.
    *progress* hears the integrity check, the replay and the database check as they go.
    Raises ReplayError when the file is not a readable CEREDIS ledger at all.
    """
    path = Path(path)
    audit = Audit(path)
    integrity = _check_integrity(audit, progress)
    referential = _check_header(audit, integrity.header)
    replayed = counted(salvage_records(path), Step.REPLAY, integrity.count, progress)
    counts, recorded = _replay(audit, referential, replayed, keep=database is not None, memo=memo)
    selection = integrity.header.get("selection") if isinstance(integrity.header, dict) else None
    run_list = _RunList.of(audit, selection if isinstance(selection, dict) else {})
    _check_footer_counts(audit, integrity.footer, counts, integrity.lines)
    _check_learners(audit, run_list, integrity.footer, recorded, integrity.lines)
    _name_learners(audit, recorded, run_list.ids or [], integrity.lines)
    if database is not None:
        from ceredis.audit_store import check_database

        check_database(audit, database, recorded, integrity.header, progress)
    return audit


def _check_integrity(audit: Audit, progress: StepProgress | None) -> VerifyReport:
    """(1) Every hash, the chain, the footer's count and Merkle root; returns the check."""
    integrity = verify_ledger(audit.path, progress=integrity_progress(progress))
    audit.integrity = integrity
    audit.complete = integrity.complete
    audit.recomputed_root = integrity.root
    if integrity.complete:
        audit.recorded_root = _footer_root(audit.path)
    for problem in integrity.problems:
        audit.findings.append(Finding(problem.line_no, None, str(problem.kind), problem.message))
    if not integrity.complete and not integrity.problems:
        audit.notes.append(
            "incomplete run: the ledger has no footer (the batch was interrupted); "
            f"finish it with `ceredis batch --resume {audit.path}`"
        )
    return integrity


def _footer_root(path: Path) -> str | None:
    """The resultsRoot the footer (the last line) records, as written."""
    with open(path, "rb") as stream:
        stream.seek(max(0, stream.seek(0, 2) - 4096))
        last = stream.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    found = _ROOT.search(last)
    return found.group(1).decode() if found else None


_ROOT = re.compile(rb'"resultsRoot":"([0-9a-f]{64})"')
_AGENT = re.compile(rb'^\{"body":\{"agentId":"([^"\\]{1,200})"')


def _name_learners(audit: Audit, recorded: list[Recorded], expected: list[str], lines: int) -> None:
    """Name the learner of every finding on a record line (from the line as it reads,
    even when it no longer parses, else from its place in the run's list), and mark the
    findings that only follow from an earlier line's change."""
    agents = {r.line: r.agent_id for r in recorded if r.agent_id}
    unnamed = {f.line for f in audit.findings if f.line is not None and f.line not in agents}
    if unnamed:
        agents.update(_agents_on_lines(audit.path, unnamed))
        footer = lines if audit.complete else None
        for line in unnamed - set(agents):
            if 2 <= line != footer and line - 2 < len(expected):
                agents[line] = expected[line - 2]
    changed = {f.line for f in audit.findings if f.kind in _CAUSES}
    misplaced = {f.line for f in audit.findings if f.kind in _MISPLACED}
    first = min((n for n in changed if n in agents), default=None)
    named = []
    for f in audit.findings:
        cause = None
        if f.kind == ProblemKind.CHAIN:
            line = f.line or 0
            cause = line if line in misplaced else line - 1 if line - 1 in changed else None
        elif f.kind in _FOLLOWERS and f.line not in agents:
            cause = first
        named.append(replace(f, agent_id=f.agent_id or agents.get(f.line), consequence_of=cause))
    audit.findings[:] = named


_FOLLOWERS = {
    str(k) for k in (ProblemKind.CHAIN, ProblemKind.FOOTER_ROOT, ProblemKind.FOOTER_COUNT)
}
_CAUSES = {str(k) for k in ProblemKind} - _FOLLOWERS  # a line's own change, as integrity sees it
_MISPLACED = {str(k) for k in (ProblemKind.DELETED, ProblemKind.REORDERED, ProblemKind.DUPLICATED)}


def _agents_on_lines(path: Path, wanted: set[int]) -> dict[int, str]:
    """The agentId each of the *wanted* lines starts with, read from the raw bytes."""
    found: dict[int, str] = {}
    with open(path, "rb") as stream:
        for line_no, raw in enumerate(stream, start=1):
            if line_no in wanted and (match := _AGENT.match(raw)):
                found[line_no] = match.group(1).decode("utf-8", "replace")
    return found


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
    audit: Audit,
    referential: Referential,
    records: Iterable[Record],
    *,
    keep: bool,
    memo: Memo | None,
) -> tuple[Counts, list[Recorded]]:
    """(3) Every record recomputed from its inputs and compared byte for byte; returns the
    statuses counted, and what the later checks need of each record (results if *keep*)."""
    counts = Counts()
    recorded: list[Recorded] = []
    for record in records:
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
        _replay_one(audit, referential, record, memo)
        recorded.append(
            Recorded(
                record.line_no,
                record.index or 0,
                agent,
                record.content_hash,
                result if keep else None,
            )
        )
    return counts, recorded


def _replay_one(audit: Audit, referential: Referential, record: Record, memo: Memo | None) -> None:
    """Replay one record (or take its replay from *memo*) and count how it compared."""
    key = f"{referential.hash}:{record.content_hash}"
    if memo is not None and key in memo:
        replayed = memo[key]
    else:
        try:
            recomputed = replay_record(record.body, referential)
        except (CeredisError, KeyError, TypeError, ValueError, AttributeError) as exc:
            audit.differed += 1
            audit.findings.append(
                Finding(
                    record.line_no,
                    record.body.get("agentId"),
                    "replay mismatch",
                    f"the record cannot be replayed: {type(exc).__name__} {exc}",
                )
            )
            return
        replayed = None if recomputed is None else canonical(recomputed)
        if memo is not None:
            memo[key] = replayed
    if replayed is None:
        audit.not_replayable += 1
    elif replayed == record.body_bytes:
        audit.identical += 1
    else:
        audit.differed += 1
        audit.findings.append(
            Finding(
                record.line_no,
                record.body.get("agentId"),
                "replay mismatch",
                difference(record.body, decode(replayed), ("recorded", "recomputed")),
            )
        )


def _check_footer_counts(audit: Audit, footer: Any, counts: Counts, lines: int) -> None:
    """(4) The footer's ok / skipped / failed are what the records say."""
    if not (isinstance(footer, dict) and isinstance(footer.get("counts"), dict)):
        return
    expected = counts.by_status()
    said = {k: footer["counts"].get(k) for k in expected}
    if said != expected:
        audit.findings.append(
            Finding(
                lines,
                None,
                "footer counts mismatch",
                f"the footer says {said}, the records say {expected}",
            )
        )


def difference(a: Any, b: Any, labels: tuple[str, str], path: str = "") -> str:
    """The first few paths where two JSON values differ: ``path: <a0> A, <b0> B``."""
    diffs = [
        f"{where}: {labels[0]} {short(x)}, {labels[1]} {short(y)}"
        for where, x, y in differences(a, b, path)
    ]
    shown = "; ".join(diffs[:5])
    return shown + (f"; … {len(diffs) - 5} more" if len(diffs) > 5 else "")


def differences(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Every leaf path where two JSON values differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            diff
            for key in sorted(set(a) | set(b))
            for diff in differences(
                a.get(key, "<absent>"), b.get(key, "<absent>"), f"{path}.{key}" if path else key
            )
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{path}[{i}]")
        ]
    return [] if canonical(a) == canonical(b) else [(path, a, b)]


def short(value: Any) -> str:
    """A JSON value as a finding shows it (cut at 80 characters)."""
    text = canonical(value).decode()
    return text if len(text) <= 80 else text[:77] + "…"


class _RunList(NamedTuple):
    """What the header says of the run's learners: the list it binds, and the ids
    themselves when the header or the disk has them."""

    bound: LearnerList | None
    ids: list[str] | None

    @classmethod
    def of(cls, audit: Audit, selection: dict[str, Any]) -> _RunList:
        bound = LearnerList.from_json(selection.get("learners"))
        return cls(bound, _expected_ids(audit, selection, bound))


def _check_learners(
    audit: Audit, run_list: _RunList, footer: Any, recorded: list[Recorded], lines: int
) -> None:
    """(5) The records' learners are the run's list: against the list the header (or, for
    ``--all``, the footer) binds, and one by one against the ids or the roster on disk."""
    bound = run_list.bound
    closing = LearnerList.from_json(footer.get("learners")) if isinstance(footer, dict) else None
    audit.learner_list = "header" if bound else "footer" if closing else "not bound"
    if bound is None and closing is None:
        audit.notes.append(
            "the learner list is not bound: this ledger's header and footer do not record "
            "it (written before ceredis did), so a learner added or removed with every "
            "hash recomputed is found only against the roster file or the database"
        )
    elif bound is None:
        audit.notes.append(
            "the learner list of an --all run is bound by the footer only, which a rewrite "
            "can recompute: only the database or a signed checkpoint anchors it"
        )
    actual = [(r.line, r.agent_id or "") for r in recorded]
    if run_list.ids is not None:
        compare_learners(audit, run_list.ids, actual)
    else:
        _check_duplicates(audit, actual)
    got = LearnerList.of(agent for _, agent in actual)
    for where, line, want in (("header", 1, bound), ("footer", lines, closing)):
        if want is not None and audit.complete and want != got:
            audit.findings.append(
                Finding(
                    line,
                    None,
                    "learner list mismatch",
                    f"the records list {plural(got.count, 'learner')} (sha256 "
                    f"{got.sha256[:16]}…), the {where} binds {want.count:,} (sha256 "
                    f"{want.sha256[:16]}…)",
                )
            )


def _expected_ids(
    audit: Audit, selection: dict[str, Any], bound: LearnerList | None
) -> list[str] | None:
    """The run's ids, one by one, when the ledger or the disk has them (else None)."""
    if isinstance(selection.get("agents"), list):
        agents = [str(a) for a in selection["agents"]]
        if bound is not None and LearnerList.of(agents) != bound:
            audit.findings.append(
                Finding(
                    1,
                    None,
                    "learner list mismatch",
                    "the header's --agent ids do not hash to the learner list it binds",
                )
            )
        return agents
    if not isinstance(selection.get("file"), str):
        return None
    roster = Path(selection["file"])
    if not roster.is_file():
        audit.notes.append(
            f"the roster {roster} is not on disk: the learners were checked against the "
            "header's list hash and count only"
        )
        return None
    digest = file_sha256(roster)
    if digest != selection.get("sha256"):
        audit.findings.append(
            Finding(
                1,
                None,
                "roster mismatch",
                f"the roster {roster} has sha256 {digest[:16]}…, the header records "
                f"{str(selection.get('sha256'))[:16]}…: the file changed since the run, or "
                "the header was rewritten",
            )
        )
        return None
    return list(Roster(str(roster), digest).ids(None))  # type: ignore[arg-type]


def compare_learners(audit: Audit, expected: list[str], actual: list[tuple[int, str]]) -> None:
    """Name every record that is not the run's next learner, and every learner missing."""
    left = Counter(expected)
    kept: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    for line, agent in actual:
        if left[agent] > 0:
            left[agent] -= 1
            kept.append((line, agent))
            first_line.setdefault(agent, line)
        elif agent in first_line:
            audit.findings.append(
                Finding(
                    line,
                    agent,
                    "duplicated learner",
                    f"{agent} is recorded again (first on line {first_line[agent]})",
                )
            )
        else:
            what = f"{agent} is" if agent else "a record without an agentId is"
            audit.findings.append(
                Finding(line, agent, "forged learner", f"{what} not in the run's learner list")
            )
    scored = Counter(agent for _, agent in kept)
    placed = 0
    for position, agent in enumerate(expected):
        if scored[agent] > 0:
            scored[agent] -= 1
            line, found = kept[placed]
            placed += 1
            if found != agent:
                audit.findings.append(
                    Finding(
                        line,
                        found,
                        "learner out of order",
                        f"this line holds {found}; learner {position + 1} of the run's "
                        f"list, {agent}, belongs here",
                    )
                )
        elif placed < len(kept) or audit.complete:
            audit.findings.append(
                Finding(
                    position + 2,
                    agent,
                    "deleted learner",
                    f"{agent}, learner {position + 1} of the run's list, has no record "
                    f"(it belongs on line {position + 2})",
                )
            )
        else:
            audit.notes.append(
                f"{plural(len(expected) - position, 'learner')} of the run's list not "
                f"recorded yet; the next is {agent}"
            )
            return


def _check_duplicates(audit: Audit, actual: list[tuple[int, str]]) -> None:
    """Without the list itself: no learner is recorded twice (an --all run lists each once)."""
    first_line: dict[str, int] = {}
    for line, agent in actual:
        if agent in first_line:
            audit.findings.append(
                Finding(
                    line,
                    agent,
                    "duplicated learner",
                    f"{agent} is recorded again (first on line {first_line[agent]})",
                )
            )
        first_line.setdefault(agent, line)
