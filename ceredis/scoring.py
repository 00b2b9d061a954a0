"""The scoring core (scoring.md §2–§10): one learner's evidence to a result.

Pure and exact: no I/O, no binary floats. Arithmetic is rational (``Fraction``); three
values are rounded half up to two decimals — competency, domain and global scores —
and each rounded value is what the next stage uses. The result is the §10 object, a
plain dict of JSON values whose scores are two-decimal ``Decimal`` numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ceredis import __version__
from ceredis.evidence import Evidence, RawEvidence, submitted, validate
from ceredis.outcome import Status
from ceredis.referential import LevelRule, Referential, show_number

__all__ = ["error_result", "evaluate", "evaluate_submitted", "round_half_up", "score"]

ACQUIS, PARTIEL, NON_ACQUIS, INCOMPLET = "acquis", "partiel", "non acquis", "incomplet"
_CENT = Decimal("0.01")


def round_half_up(value: Fraction) -> Decimal:
    """*value* rounded half up (away from zero on a tie) to exactly two decimals."""
    cents = abs(value) * 100
    whole = int(cents + Fraction(1, 2))
    rounded = Decimal(whole).scaleb(-2).quantize(_CENT)
    return -rounded if value < 0 else rounded


def evaluate(
    agent_id: str,
    records: Iterable[RawEvidence],
    referential: Referential,
    *,
    engine_version: str = __version__,
) -> dict[str, Any]:
    """Score one learner from the records a source delivered (scoring.md §1–§10)."""
    return evaluate_submitted(
        agent_id, [submitted(r) for r in records], referential, engine_version=engine_version
    )[0]


def evaluate_submitted(
    agent_id: str,
    records: Sequence[Mapping[str, Any]],
    referential: Referential,
    *,
    engine_version: str = __version__,
) -> tuple[dict[str, Any], list[Evidence] | None]:
    """Score submitted records; also return the normalised evidence (None when invalid).

    No records gives ``SKIPPED``; any invalid record gives ``ERROR`` listing every
    problem — never a score computed on a subset.
    """
    stamp = _stamp(agent_id, referential, engine_version)
    if not records:
        return {**stamp, **_empty(Status.SKIPPED), "reason": "no evidence"}, []
    evidence, problems = validate(agent_id, records, referential)
    if problems:
        count = len(problems)
        message = f"{count} invalid evidence record{'s' if count > 1 else ''}: " + "; ".join(
            problems
        )
        return error_result(agent_id, referential, message, engine_version=engine_version), None
    return {**stamp, **score(evidence, referential)}, evidence


def error_result(
    agent_id: str, referential: Referential, message: str, *, engine_version: str = __version__
) -> dict[str, Any]:
    """The ``ERROR`` result of a learner who could not be scored (source down, …)."""
    return {
        **_stamp(agent_id, referential, engine_version),
        **_empty(Status.ERROR),
        "error": message,
    }


def score(evidence: Sequence[Evidence], referential: Referential) -> dict[str, Any]:
    """The scores, statuses and level of valid evidence (without the identity fields)."""
    by_type: dict[str, dict[str, list[Fraction]]] = defaultdict(lambda: defaultdict(list))
    for e in evidence:
        by_type[e.competency_id][e.evidence_type].append(Fraction(e.raw_score))
    present = sorted({e.evidence_type for e in evidence})

    competencies: dict[str, dict[str, Any]] = {}
    scores: dict[str, Decimal] = {}
    counted: set[str] = set()
    for cid, competency in referential.competencies.items():
        types = by_type.get(cid, {})
        exact = sum(
            (
                referential.evidence_types[t].weight / 100 * (sum(raw) / len(raw))
                for t, raw in types.items()
            ),
            Fraction(0),
        )
        scores[cid] = round_half_up(exact)
        missing = [t for t in competency.required if t not in types]
        if missing:
            status = INCOMPLET
            reasons = [f"missing required evidence type {t}" for t in missing]
        else:
            status = _status(scores[cid], referential)
            reasons = []
            if types:
                counted.add(cid)
        competencies[cid] = {
            "score": scores[cid],
            "status": status,
            "evidenceCount": sum(len(raw) for raw in types.values()),
            "evidenceTypes": sorted(types),
            "reasons": reasons,
        }

    domains: dict[str, Decimal] = {}
    for domain in referential.domains:
        members = [referential.competencies[c] for c in domain.competencies]
        total = sum(
            (c.weight * Fraction(scores[c.id]) for c in members if c.id in counted), Fraction(0)
        )
        domains[domain.id] = round_half_up(total / sum(c.weight for c in members))

    weighted = sum(
        (d.weight / 100 * Fraction(domains[d.id]) for d in referential.domains), Fraction(0)
    )
    global_score = round_half_up(referential.global_scale / 100 * weighted)

    band, granted, decision = _level(global_score, domains, present, referential)
    return {
        "status": Status.OK,
        "ceredisScore": global_score,
        "bandLevel": band,
        "cecrlLevel": granted,
        "domainScores": domains,
        "competencies": competencies,
        "evidenceTypesPresent": present,
        "levelDecision": decision,
    }


def _status(value: Decimal, referential: Referential) -> str:
    if value >= referential.acquis:
        return ACQUIS
    if value >= referential.partiel:
        return PARTIEL
    return NON_ACQUIS


def _level(
    global_score: Decimal,
    domains: Mapping[str, Decimal],
    present: Sequence[str],
    referential: Referential,
) -> tuple[str, str, list[dict[str, Any]]]:
    """The band, and the level granted by the cascade with every check made (§7)."""
    bands = referential.bands
    index = max(i for i, b in enumerate(bands) if global_score >= b.min)
    band = bands[index].level
    decision: list[dict[str, Any]] = []
    for level in (b.level for b in reversed(bands[: index + 1])):
        checks = [
            _check(rule, global_score, domains, present)
            for rule in referential.level_rules.get(level, ())
        ]
        failed = [c for c in checks if not c["passed"]]
        decision.append(
            {
                "level": level,
                "passed": not failed,
                "checks": checks,
                "reasons": [f"{level} refused: {c['detail']}" for c in failed],
            }
        )
        if not failed:
            return band, level, decision
    raise AssertionError("the lowest band carries no rule, so the cascade always grants")


def _check(
    rule: LevelRule, global_score: Decimal, domains: Mapping[str, Decimal], present: Sequence[str]
) -> dict[str, Any]:
    if rule.kind == "minScore":
        passed = global_score >= rule.value
        sign = "≥" if passed else "<"
        detail = f"ceredisScore {global_score} {sign} {show_number(rule.value)}"
    elif rule.kind == "domainMinimum":
        value = domains[rule.domain]
        passed = value >= rule.value
        sign = "≥" if passed else "<"
        detail = f"{rule.domain} {value} {sign} {show_number(rule.value)}"
    else:  # requiredEvidenceTypes
        missing = [t for t in rule.types if t not in present]
        passed = not missing
        detail = (
            f"{', '.join(rule.types)} evidence present"
            if passed
            else ", ".join(f"no {t} evidence" for t in missing)
        )
    return {"rule": rule.kind, "passed": passed, "detail": detail}


def _stamp(agent_id: str, referential: Referential, engine_version: str) -> dict[str, Any]:
    return {
        "agentId": agent_id,
        "referentialVersion": referential.id,
        "referentialHash": referential.hash,
        "engineVersion": engine_version,
    }


def _empty(status: Status) -> dict[str, Any]:
    return {
        "status": status,
        "ceredisScore": None,
        "bandLevel": None,
        "cecrlLevel": None,
        "domainScores": None,
        "competencies": None,
        "evidenceTypesPresent": None,
        "levelDecision": None,
    }
