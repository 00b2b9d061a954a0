"""Output for people: rich tables for a result, a referential, a batch and a verification.

Only the CLI imports this module; the library returns data and never prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ceredis.outcome import Status
from ceredis.plan import BatchPlan
from ceredis.referential import Referential, show_number
from ceredis.report import BatchReport, plural

__all__ = ["batch_summary", "plan_view", "referential_tables", "result_view"]

_STATUS_STYLE = {"acquis": "green", "partiel": "yellow", "non acquis": "red", "incomplet": "dim"}


def _table(title: str, plain: bool) -> Table:
    """A titled table; *plain* (not a terminal): no box drawing, for mail and logs."""
    return Table(title=title, title_justify="left", box=None if plain else box.HEAVY_HEAD)


def plan_view(plan: BatchPlan, total: int | None) -> RenderableType:
    """What ``batch --dry-run`` shows: the run it would make, nothing written."""
    learners = plural(total, "learner") if total is not None else "every learner of the source"
    rate = plan.source.settings.rate
    limit = (
        "not limited (a local file)"
        if plan.source.kind == "file"
        else f"{rate.rate:g} requests/s, burst {rate.burst}, all workers together"
    )
    rows = [
        ("learners", f"{learners} ({_selection(plan.selection.to_json())})"),
        ("source", f"{plan.source.name} ({plan.source.uri})"),
        ("store", f"{plan.store.display} (not opened)"),
        ("ledger", str(plan.ledger)),
        ("report", str(plan.report)),
        ("workers", plural(plan.workers, "worker")),
        ("in flight", _in_flight(plan)),
        ("rate", limit),
        ("referential", f"{plan.referential.id} ({plan.referential.hash[:12]}…)"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [Text("Dry run: nothing scored, nothing written. The batch would score:")]
    lines += [Text(f"  {name:<{width}}  {value}") for name, value in rows]
    return Group(*lines)


def _in_flight(plan: BatchPlan) -> str:
    """The dry run's line on requests in flight (``--in-flight``): remote sources only."""
    if plan.source.kind == "file":
        return "not bounded (a local file, read inline)"
    bound = plan.source.settings.in_flight
    return f"at most {plural(bound, 'request')} to the source at once, all workers together"


def _selection(selection: Mapping[str, Any]) -> str:
    if "agents" in selection:
        return (
            "--agent "
            + " ".join(selection["agents"][:5])
            + (" …" if len(selection["agents"]) > 5 else "")
        )
    if "file" in selection:
        return ("the bundled roster " if selection.get("bundled") else "roster ") + selection[
            "file"
        ]
    return "--all"


def batch_summary(report: BatchReport) -> RenderableType:
    """The end of a batch: the counts table, the levels granted, the failed learners."""
    table = Table(title=f"Run {report.run_id}", title_justify="left")
    for column in ("total", "ok", "skipped", "failed", "concurrency", "elapsed", "learners/s"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{report.total:,}",
        Text(f"{report.ok:,}", style="green"),
        Text(f"{report.skipped:,}", style="yellow"),
        Text(f"{report.failed:,}", style="bold red" if report.failed else ""),
        plural(report.concurrency, "worker"),
        f"{report.elapsed:.1f} s",
        f"{report.rate:,.1f}",
    )
    tally = report.tally
    levels = " · ".join(f"{level} {n:,}" for level, n in tally.levels_json().items()) or "none"
    lines: list[RenderableType] = [
        table,
        Text.assemble(("Levels granted: ", "bold"), levels),
        Text(
            f"{plural(tally.held, 'learner')} held below their band by the strict level rules",
            style="yellow" if tally.held else "",
        ),
    ]
    if report.failed:
        lines.append(Text(f"Failed: {plural(report.failed, 'learner')}", style="bold red"))
        lines += [Text(f"  • {agent}: {reason}") for agent, reason in tally.failures]
        if report.failed > len(tally.failures):
            more = report.failed - len(tally.failures)
            lines.append(Text(f"  … and {more:,} more: see {report.report}"))
    lines.append(
        Text(f"ledger {report.ledger} (resultsRoot {report.results_root})\nreport {report.report}")
    )
    return Group(*lines)


def result_view(
    result: Mapping[str, Any], referential: Referential, *, plain: bool = False
) -> RenderableType:
    """A teacher-readable explanation of one learner's result (*plain*: no box drawing)."""
    head = Text.assemble(
        ("Learner ", "bold"),
        (result["agentId"], "bold cyan"),
        f" — referential {result['referentialVersion']} ({result['referentialHash'][:12]}…)",
    )
    if result["status"] == Status.SKIPPED:
        return Group(head, Text(f"SKIPPED: {result['reason']}", style="yellow"))
    if result["status"] == Status.ERROR:
        message = result["error"]
        summary, _, details = message.partition(": ")
        lines = [Text(f"ERROR: {summary}", style="bold red")]
        lines += [Text(f"  • {item}") for item in details.split("; ") if item]
        return Group(head, *lines)
    scale = show_number(referential.global_scale)
    return Group(
        head,
        _competency_table(result, referential, plain),
        _domain_table(result, referential, plain),
        Text.assemble(
            ("CEREDIS score ", "bold"),
            (f"{result['ceredisScore']} / {scale}", "bold cyan"),
            f" → band {result['bandLevel']}",
        ),
        *_level_lines(result),
    )


def _competency_table(result: Mapping[str, Any], referential: Referential, plain: bool) -> Table:
    competencies = _table("Competencies", plain)
    for column, justify in (
        ("id", "left"),
        ("competency", "left"),
        ("score", "right"),
        ("status", "left"),
        ("evidence", "right"),
        ("types", "left"),
        ("missing", "left"),
    ):
        competencies.add_column(column, justify=justify)  # type: ignore[arg-type]
    for cid, c in result["competencies"].items():
        missing = ", ".join(r.rsplit(" ", 1)[-1] for r in c["reasons"])
        competencies.add_row(
            cid,
            referential.competencies[cid].name if cid in referential.competencies else "",
            str(c["score"]),
            Text(c["status"], style=_STATUS_STYLE.get(c["status"], "")),
            str(c["evidenceCount"]),
            " ".join(c["evidenceTypes"]),
            Text(missing, style="red") if missing else "",
        )
    return competencies


def _domain_table(result: Mapping[str, Any], referential: Referential, plain: bool) -> Table:
    domains = _table("Domains", plain)
    for column, justify in (
        ("id", "left"),
        ("domain", "left"),
        ("weight", "right"),
        ("score", "right"),
    ):
        domains.add_column(column, justify=justify)  # type: ignore[arg-type]
    for domain in referential.domains:
        score = result["domainScores"].get(domain.id)
        domains.add_row(domain.id, domain.name, f"{show_number(domain.weight)} %", str(score))
    return domains


def _level_lines(result: Mapping[str, Any]) -> list[RenderableType]:
    """The level rules tried from the band down, and the level granted."""
    lines: list[RenderableType] = [Text("Level rules (from the band down):", style="bold")]
    for step in result["levelDecision"]:
        verdict = ("granted", "green") if step["passed"] else ("refused", "red")
        lines.append(Text.assemble(f"  {step['level']:<7}", verdict))
        if not step["checks"]:
            lines.append(Text("      no rules at this level", style="dim"))
        for check in step["checks"]:
            mark = ("✓", "green") if check["passed"] else ("✗", "red")
            lines.append(Text.assemble("      ", mark, f" {check['rule']}: {check['detail']}"))
    lines.append(Text.assemble(("Granted level: ", "bold"), (result["cecrlLevel"], "bold green")))
    return lines


def referential_tables(referential: Referential) -> RenderableType:
    """The rules in force, as tables."""
    head = Text.assemble(
        (referential.name, "bold"),
        f"\nid {referential.id}, version {referential.version}, sha256 {referential.hash}",
    )
    types = Table(title="Evidence types", title_justify="left")
    for column in ("type", "name", "weight", "cap"):
        types.add_column(column)
    for t in referential.evidence_types.values():
        types.add_row(t.id, t.name, f"{show_number(t.weight)} %", f"{show_number(t.cap)} %")

    comps = Table(title="Domains and competencies", title_justify="left")
    for column in ("domain", "weight", "competency", "name", "level", "v", "required"):
        comps.add_column(column)
    for domain in referential.domains:
        for i, cid in enumerate(domain.competencies):
            c = referential.competencies[cid]
            comps.add_row(
                f"{domain.id} {domain.name}" if i == 0 else "",
                f"{show_number(domain.weight)} %" if i == 0 else "",
                cid,
                c.name,
                c.level,
                show_number(c.weight),
                " ".join(c.required),
                end_section=i == len(domain.competencies) - 1,
            )

    levels = Table(title="Bands and level rules", title_justify="left")
    for column in ("level", "score from", "rules"):
        levels.add_column(column)
    for band in referential.bands:
        rules = referential.level_rules.get(band.level, ())
        text = "; ".join(_rule(r) for r in rules) or "none"
        levels.add_row(band.level, show_number(band.min), text)

    thresholds = Text(
        f"Competency status: acquis ≥ {show_number(referential.acquis)}, partiel ≥ "
        f"{show_number(referential.partiel)}, else non acquis; incomplet when a required "
        f"type has no evidence. Global score scale: 0–{show_number(referential.global_scale)}."
    )
    return Group(head, types, comps, levels, thresholds)


def _rule(rule: Any) -> str:
    if rule.kind == "minScore":
        return f"score ≥ {show_number(rule.value)}"
    if rule.kind == "domainMinimum":
        return f"{rule.domain} ≥ {show_number(rule.value)}"
    return f"evidence of {' and '.join(rule.types)}"


def audit_view(audit: Any) -> RenderableType:
    """The outcome of ``ceredis verify`` for a person: what held, what differed, each
    finding with its line and learner."""
    if audit.ok:
        head = Text(f"OK: {audit.path} is intact and reproducible", style="bold green")
    elif not audit.complete and not audit.findings:
        head = Text(f"INCOMPLETE: {audit.path} has no footer", style="bold yellow")
    else:
        head = Text(f"FAILED: {len(audit.findings)} problem(s) in {audit.path}", style="bold red")
    lines: list[RenderableType] = [head, Text(_replay_summary(audit))]
    if audit.recorded_root:
        lines.append(Text(f"resultsRoot recorded in the footer:   {audit.recorded_root}"))
    if audit.recomputed_root and audit.recomputed_root != audit.recorded_root:
        lines.append(Text(f"resultsRoot recomputed from records: {audit.recomputed_root}"))
    lines.append(Text(f"learner list bound by: {audit.learner_list}"))
    if audit.database_rows is not None:
        lines.append(
            Text(
                f"database: {plural(audit.database_rows, 'result row')} and "
                f"{plural(audit.profile_rows or 0, 'profile row')} checked field by field"
            )
        )
    lines += [Text(f"note: {note}", style="yellow") for note in audit.notes]
    lines += [Text(f"  • {finding}", style="red") for finding in audit.findings]
    return Group(*lines)


def _replay_summary(audit: Any) -> str:
    """``run R: N records: X replayed identically, Y differed, Z not replayable``."""
    records = plural(audit.records, "record")
    text = f"run {audit.run_id}: {records}: {audit.identical:,} replayed identically"
    if audit.differed:
        text += f", {audit.differed} differed"
    return text + f", {audit.not_replayable} not replayable (learners that could not be scored)"
