"""Output for people: rich tables for a result, a referential, a batch and a verification.

Only the CLI imports this module; the library returns data and never prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ceredis.outcome import Status
from ceredis.referential import Referential, show_number

__all__ = ["referential_tables", "result_view"]

_STATUS_STYLE = {"acquis": "green", "partiel": "yellow", "non acquis": "red", "incomplet": "dim"}


def result_view(result: Mapping[str, Any], referential: Referential) -> RenderableType:
    """A teacher-readable explanation of one learner's result."""
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
        _competency_table(result, referential),
        _domain_table(result, referential),
        Text.assemble(
            ("CEREDIS score ", "bold"),
            (f"{result['ceredisScore']} / {scale}", "bold cyan"),
            f" → band {result['bandLevel']}",
        ),
        *_level_lines(result),
    )


def _competency_table(result: Mapping[str, Any], referential: Referential) -> Table:
    competencies = Table(title="Competencies", title_justify="left")
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


def _domain_table(result: Mapping[str, Any], referential: Referential) -> Table:
    domains = Table(title="Domains", title_justify="left")
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
                f"database: {audit.database_rows} result rows and {audit.profile_rows} profile "
                "rows checked field by field"
            )
        )
    lines += [Text(f"note: {note}", style="yellow") for note in audit.notes]
    lines += [Text(f"  • {finding}", style="red") for finding in audit.findings]
    return Group(*lines)


def _replay_summary(audit: Any) -> str:
    """``run R: N records: X replayed identically, Y differed, Z not replayable``."""
    text = f"run {audit.run_id}: {audit.records} records: {audit.identical} replayed identically"
    if audit.differed:
        text += f", {audit.differed} differed"
    return text + f", {audit.not_replayable} not replayable (learners that could not be scored)"
