"""The scoring core (scoring.md §2–§10): one learner's evidence to a result.

Pure and exact: no I/O, no binary floats. Arithmetic is rational, in integers over
common denominators (raw scores in units of one power of ten, weights scaled once per
referential); three values are rounded half up to two decimals — competency, domain and
global scores — and each rounded value is what the next stage uses. The result is the
§10 object, a plain dict of JSON values whose scores are two-decimal ``Decimal`` numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ceredis import __version__
from ceredis.evidence import Evidence, RawEvidence, submitted, validate
from ceredis.outcome import Status
from ceredis.referential import LevelRule, Referential, show_number

__all__ = [
    "error_result",
    "evaluate",
    "evaluate_evidence",
    "evaluate_submitted",
    "round_half_up",
    "score",
]

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
    if not records:
        stamp = _stamp(agent_id, referential, engine_version)
        return {**stamp, **_empty(Status.SKIPPED), "reason": "no evidence"}, []
    evidence, problems = validate(agent_id, records, referential)
    if problems:
        count = len(problems)
        message = f"{count} invalid evidence record{'s' if count > 1 else ''}: " + "; ".join(
            problems
        )
        return error_result(agent_id, referential, message, engine_version=engine_version), None
    result = evaluate_evidence(agent_id, evidence, referential, engine_version=engine_version)
    return result, evidence


def evaluate_evidence(
    agent_id: str, evidence: Sequence[Evidence], referential: Referential, *, engine_version: str
) -> dict[str, Any]:
    """The ``OK`` result of valid, normalised evidence (at least one record)."""
    return {**_stamp(agent_id, referential, engine_version), **score(evidence, referential)}


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
    plan = _plan(referential)
    ratios = [e.raw_score.as_integer_ratio() for e in evidence]
    common = math.lcm(*{d for _, d in ratios}) if ratios else 1
    by_type: dict[str, dict[str, list[int]]] = {}  # competency → type → [Σ scores, count]
    for e, (n, d) in zip(evidence, ratios, strict=True):
        types = by_type.get(e.competency_id)
        if types is None:
            types = by_type[e.competency_id] = {}
        sums = types.get(e.evidence_type)
        if sums is None:
            types[e.evidence_type] = [n * (common // d), 1]  # in units of 1/common
        else:
            sums[0] += n * (common // d)
            sums[1] += 1
    present = sorted({e.evidence_type for e in evidence})

    competencies: dict[str, dict[str, Any]] = {}
    cents: dict[str, int] = {}
    counted: set[str] = set()
    for cid, competency in referential.competencies.items():
        types = by_type.get(cid, {})
        cents[cid] = _competency_cents(types, common, plan.type_weights)
        missing = [t for t in competency.required if t not in types]
        if missing:
            status = INCOMPLET
            reasons = [f"missing required evidence type {t}" for t in missing]
        else:
            status = _status(cents[cid], plan)
            reasons = []
            if types:
                counted.add(cid)
        competencies[cid] = {
            "score": _decimal(cents[cid]),
            "status": status,
            "evidenceCount": sum([count for _, count in types.values()]),
            "evidenceTypes": sorted(types),
            "reasons": reasons,
        }

    domain_cents = {
        domain_id: _round_ratio(
            sum([weight * cents[c] for c, weight in members if c in counted]), total
        )
        for domain_id, members, total in plan.domains
    }
    global_cents = _round_ratio(
        sum([weight * domain_cents[d] for d, weight in plan.global_weights]), plan.global_total
    )
    domains = {d: _decimal(c) for d, c in domain_cents.items()}
    global_score = _decimal(global_cents)

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


@dataclass(frozen=True)
class _Plan:
    """A referential's weights as integers over common denominators, computed once.

    Each stage is a weighted sum of integers (raw scores in units of a common power of
    ten, then cents) divided by an integer: exact, and rounded half up by integer
    division, as scoring.md §2 requires, without building a rational per evidence.
    """

    type_weights: Mapping[str, tuple[int, int]]  # w_t as (numerator, denominator)
    domains: tuple[tuple[str, tuple[tuple[str, int], ...], int], ...]  # id, (cid, v_c), Σ v_c
    global_weights: tuple[tuple[str, int], ...]  # (domain, 6 × W_D / 10⁴ scaled to ints)
    global_total: int
    acquis: int  # the least competency score in cents that is acquis
    partiel: int


_PLANS: dict[int, tuple[Referential, _Plan]] = {}  # the referential kept: its id stays its own
_MAX_PLANS = 8


def _plan(referential: Referential) -> _Plan:
    cached = _PLANS.get(id(referential))
    if cached is not None and cached[0] is referential:
        return cached[1]
    domains = []
    for domain in referential.domains:
        weights = [referential.competencies[c].weight for c in domain.competencies]
        scaled, total = _integers(weights)
        domains.append((domain.id, tuple(zip(domain.competencies, scaled, strict=True)), total))
    factors = [referential.global_scale * d.weight / 10_000 for d in referential.domains]
    scaled, denominator = _integers(factors, sum_as_total=False)
    plan = _Plan(
        type_weights={
            t: (kind.weight.numerator, kind.weight.denominator)
            for t, kind in referential.evidence_types.items()
        },
        domains=tuple(domains),
        global_weights=tuple(zip((d.id for d in referential.domains), scaled, strict=True)),
        global_total=denominator,
        acquis=math.ceil(referential.acquis * 100),
        partiel=math.ceil(referential.partiel * 100),
    )
    if len(_PLANS) >= _MAX_PLANS:  # a process scores with one or two referentials
        _PLANS.clear()
    _PLANS[id(referential)] = (referential, plan)
    return plan


def _integers(weights: Sequence[Fraction], *, sum_as_total: bool = True) -> tuple[list[int], int]:
    """*weights* as integers over one denominator; with that denominator (or their sum)."""
    denominator = math.lcm(*(w.denominator for w in weights)) if weights else 1
    scaled = [int(w * denominator) for w in weights]
    return scaled, (sum(scaled) if sum_as_total else denominator)


def _competency_cents(
    types: Mapping[str, list[int]], common: int, weights: Mapping[str, tuple[int, int]]
) -> int:
    """Σ_t w_t × mean(c, t) in cents, rounded half up; sums are in units of 1/common."""
    if not types:
        return 0
    parts = [(weights[t][0] * total, weights[t][1] * count) for t, (total, count) in types.items()]
    denominator = math.lcm(*[d for _, d in parts])
    numerator = sum([n * (denominator // d) for n, d in parts])
    return _round_ratio(numerator, denominator * common)


def _round_ratio(numerator: int, denominator: int) -> int:
    """numerator / denominator (both ≥ 0, denominator > 0) rounded half up to an integer."""
    return (2 * numerator + denominator) // (2 * denominator)


def _decimal(cents: int) -> Decimal:
    """A non-negative number of cents as a two-decimal Decimal (``2100`` → ``21.00``)."""
    value = _DECIMALS.get(cents)
    if value is None:
        value = Decimal(f"{cents // 100}.{cents % 100:02d}")
        if cents <= _CACHED_CENTS:
            _DECIMALS[cents] = value
    return value


_DECIMALS: dict[int, Decimal] = {}  # Decimals are immutable: each score built once
_CACHED_CENTS = 60_000  # up to 600.00, the global scale's top


def _status(cents: int, plan: _Plan) -> str:
    if cents >= plan.acquis:
        return ACQUIS
    if cents >= plan.partiel:
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
