"""The scoring core as first written, with ``Fraction`` throughout: the oracle the integer
scoring of ``ceredis.scoring`` is checked against (tests/test_fast_paths.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ceredis.evidence import Evidence
from ceredis.referential import Referential
from ceredis.scoring import ACQUIS, INCOMPLET, NON_ACQUIS, PARTIEL, round_half_up


def reference_scores(evidence: Sequence[Evidence], referential: Referential) -> dict[str, Any]:
    """Competency scores and statuses, domain scores and the global score, in Fractions."""
    by_type: dict[str, dict[str, list[Fraction]]] = defaultdict(lambda: defaultdict(list))
    for e in evidence:
        by_type[e.competency_id][e.evidence_type].append(Fraction(e.raw_score))
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
        if [t for t in competency.required if t not in types]:
            status = INCOMPLET
        else:
            status = (
                ACQUIS
                if scores[cid] >= referential.acquis
                else PARTIEL
                if scores[cid] >= referential.partiel
                else NON_ACQUIS
            )
            if types:
                counted.add(cid)
        competencies[cid] = {"score": scores[cid], "status": status}
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
    return {
        "ceredisScore": round_half_up(referential.global_scale / 100 * weighted),
        "domainScores": domains,
        "competencies": competencies,
    }
