"""Check 6 of ``ceredis verify --database``: the database holds what the ledger holds.

Every row of the run in ``ceredis_result`` is compared field by field with its ledger
record (status, score, band, level, domain scores, competency detail, error, position,
content hash, and the stored §10 object re-read and compared path by path); every row of
``ceredis_profile`` that names the run must hold exactly that run's result; the run row
must say what the footer says. A finding names table, learner, field and both values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from ceredis.audit import Audit, Finding, Recorded, differences, short
from ceredis.outcome import Status
from ceredis.report import plural
from ceredis.steps import Step, StepProgress, counted
from ceredis.stores import ProfileRow, ResultRow, RunRow, parse_store_url

__all__ = ["check_database"]

_NOT_STORED = "result store:"  # a record whose row could not be written says so


def check_database(
    audit: Audit,
    url: str,
    recorded: list[Recorded],
    header: Any,
    progress: StepProgress | None = None,
) -> None:
    """(6) The run row, every result row and every profile naming the run, against the
    ledger; *progress* hears the result rows checked."""
    store = parse_store_url(url).open()
    try:
        run = store.get_run(audit.run_id or "")
        if run is None:
            audit.findings.append(
                Finding(None, None, "database: run missing", f"run {audit.run_id} is not in it")
            )
            return
        _check_run_row(audit, run)
        by_agent: dict[str, Recorded] = {}
        for record in recorded:
            by_agent.setdefault(record.agent_id or "", record)
        rows = counted(store.iter_rows(run.run_id), Step.DATABASE, audit.records, progress)
        audit.database_rows = _check_results(audit, rows, by_agent)
        audit.profile_rows = _check_profiles(
            audit, store.iter_profiles(run.run_id), by_agent, run.started_at
        )
    finally:
        store.close()


def _check_run_row(audit: Audit, run: RunRow) -> None:
    """The run row is finished with the footer's root and count, or not finished at all."""
    if audit.complete and run.results_root != audit.recorded_root:
        audit.findings.append(
            Finding(
                None,
                None,
                "database: root mismatch",
                f"ceredis_run {run.run_id}: resultsRoot {run.results_root} in the database, "
                f"{audit.recorded_root} in the ledger",
            )
        )
    if audit.complete and run.total is not None and run.total != audit.records:
        audit.findings.append(
            Finding(
                None,
                None,
                "database: count mismatch",
                f"ceredis_run {run.run_id}: total {run.total} in the database, "
                f"{plural(audit.records, 'record')} in the ledger",
            )
        )
    if not audit.complete and run.finished_at is not None:
        audit.findings.append(
            Finding(
                None,
                None,
                "database: run finished",
                f"ceredis_run {run.run_id} says the run finished with "
                f"{plural(run.total or 0, 'learner')} "
                f"(resultsRoot {run.results_root}), but the ledger has no footer: it was cut",
            )
        )


def _check_results(audit: Audit, rows: Iterable[ResultRow], by_agent: dict[str, Recorded]) -> int:
    """Every stored row against its record; then the records without a row. Returns the
    number of rows read."""
    seen: set[str] = set()
    for row in rows:
        seen.add(row.agent_id)
        record = by_agent.get(row.agent_id)
        if record is None:
            audit.findings.append(
                Finding(
                    None,
                    row.agent_id,
                    "database: extra row",
                    f"ceredis_result {row.agent_id}: a row for a learner the ledger does not hold",
                )
            )
            continue
        for name, stored, recorded in _result_fields(row, record):
            _compare(audit, "ceredis_result", record, name, stored, recorded)
    for agent, record in by_agent.items():
        result = record.result or {}
        if agent not in seen and not str(result.get("error") or "").startswith(_NOT_STORED):
            audit.findings.append(
                Finding(
                    record.line,
                    agent,
                    "database: row missing",
                    f"ceredis_result {agent}: no row for this learner in the run",
                )
            )
    return len(seen)


def _result_fields(row: ResultRow, record: Recorded) -> Iterator[tuple[str, Any, Any]]:
    """(field, in the database, in the ledger) for every column of a result row."""
    result = record.result or {}
    ok = result.get("status") == Status.OK
    yield "status", row.status, result.get("status")
    yield "ceredisScore", row.ceredis_score, result.get("ceredisScore")
    yield "bandLevel", row.band_level, result.get("bandLevel")
    yield "cecrlLevel", row.cecrl_level, result.get("cecrlLevel")
    yield "domainScores", _json(row.domain_scores), result.get("domainScores") if ok else None
    yield "competencies", _json(row.competencies), result.get("competencies") if ok else None
    yield "error", row.error, result.get("error")
    yield "position", row.position, record.index
    yield "contentHash", row.content_hash, record.content_hash
    yield "result", _json(row.result), result


def _check_profiles(
    audit: Audit, rows: Iterable[ProfileRow], by_agent: dict[str, Recorded], started: str
) -> int:
    """Every profile naming the run holds exactly this run's OK result. Returns the count."""
    count = 0
    for row in rows:
        count += 1
        record = by_agent.get(row.agent_id)
        result = (record.result if record else None) or {}
        if record is None or result.get("status") != Status.OK:
            audit.findings.append(
                Finding(
                    record.line if record else None,
                    row.agent_id,
                    "database: profile mismatch",
                    f"ceredis_profile {row.agent_id}: names run {row.run_id}, whose ledger "
                    f"has {'no scored result' if record else 'no record'} for this learner",
                )
            )
            continue
        for name, stored, recorded in (
            ("ceredisScore", row.ceredis_score, result.get("ceredisScore")),
            ("bandLevel", row.band_level, result.get("bandLevel")),
            ("cecrlLevel", row.cecrl_level, result.get("cecrlLevel")),
            ("domainScores", _json(row.domain_scores), result.get("domainScores")),
            ("contentHash", row.content_hash, record.content_hash),
            ("runStartedAt", row.run_started_at, started),
        ):
            _compare(audit, "ceredis_profile", record, name, stored, recorded)
    return count


def _compare(
    audit: Audit, table: str, record: Recorded, name: str, stored: Any, recorded: Any
) -> None:
    """A finding for every path where *stored* (the database's) differs from *recorded*."""
    if _same_number(stored, recorded):
        return
    agent = record.agent_id
    for path, in_db, in_ledger in differences(stored, recorded, name):
        audit.findings.append(
            Finding(
                record.line,
                agent,
                f"database: {table.removeprefix('ceredis_')} mismatch",
                f"{table} {agent}: {path} {short(in_db)} in the database, "
                f"{short(in_ledger)} in the ledger",
            )
        )


def _same_number(a: Any, b: Any) -> bool:
    """Scores compare as numbers: a database may keep 433.00 as 433.0 or 433."""
    numbers = (Decimal, int)
    both = isinstance(a, numbers) and isinstance(b, numbers)
    return both and not isinstance(a, bool) and a == b and Decimal(a).is_finite()


def _json(text: str | None) -> Any:
    """A stored JSON column re-read with exact decimals (as the ledger has them)."""
    if text is None:
        return None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=lambda name: f"<{name}>")
    except ValueError:
        return f"<not JSON: {text[:40]}>"
