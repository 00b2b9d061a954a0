"""A synthetic but realistic cohort, deterministic for a seed (``ceredis sample``).

Learners follow profiles spread over PRE_A2…C1, plus a "D5-weak" profile (strong in
D1–D4, weak in the metalinguistic domain: the band says C1 or B2, the rules say less)
and a few learners with no evidence at all. Each profile has an ability (the centre of
its raw scores) and a coverage (the chance that a competency has evidence of a type),
so lower profiles miss required types and get ``incomplet`` competencies.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from ceredis.errors import ConfigError
from ceredis.private import atomic_file
from ceredis.referential import Referential
from ledger.canonical import canonical

__all__ = ["PROFILES", "CohortFiles", "Profile", "generate_cohort", "write_cohort"]


@dataclass(frozen=True)
class Profile:
    """How a kind of learner performs: score centre per domain and evidence coverage."""

    name: str
    share: float
    ability: float
    coverage: float
    d5_ability: float | None = None


PROFILES = (
    Profile("PRE_A2", 0.17, 38, 0.45),
    Profile("A2", 0.18, 55, 0.75),
    Profile("B1", 0.20, 66, 0.88),
    Profile("B2", 0.18, 76, 0.96),
    Profile("C1", 0.14, 91, 1.0),
    Profile("D5_WEAK", 0.10, 92, 1.0, d5_ability=52),
)
NO_EVIDENCE_EVERY = 30  # one learner in 30 has no evidence at all
_SONGS = ("La Bohème", "Ne me quitte pas", "Le Sud", "Formidable", "Papaoutai", "Dernière danse")
_VALIDATORS = ("teacher:amelie", "teacher:bruno", "teacher:chloe", "system:autoscore")
_START = datetime(2026, 9, 1, 8, 0, tzinfo=timezone(timedelta(hours=2)))


def generate_cohort(
    referential: Referential, agents: int, seed: int = 0, evidence_per_learner: int | None = None
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Yield ``(agentId, records)`` for each learner, in id order.

    *evidence_per_learner* aims the average record count (the default, about 75, comes
    from the profiles); records use the §1 fields with exact ``Decimal`` scores.
    """
    rng = random.Random(seed)
    width = max(5, len(str(agents)))
    types = list(referential.evidence_types)
    for i in range(1, agents + 1):
        agent = f"L{i:0{width}d}"
        if i % NO_EVIDENCE_EVERY == NO_EVIDENCE_EVERY // 2:
            yield agent, []
            continue
        profile = rng.choices(PROFILES, weights=[p.share for p in PROFILES])[0]
        yield agent, _learner(rng, agent, profile, referential, types, evidence_per_learner)


def _learner(
    rng: random.Random,
    agent: str,
    profile: Profile,
    referential: Referential,
    types: list[str],
    target: int | None,
) -> list[dict[str, Any]]:
    shift = rng.gauss(0, 4)
    cells = []
    for cid, competency in referential.competencies.items():
        centre = profile.ability + shift
        if profile.d5_ability is not None and competency.domain == "D5":
            centre = profile.d5_ability + shift
        for t in types:
            chance = profile.coverage if t in competency.required else profile.coverage - 0.1
            if rng.random() < chance:
                cells.append((cid, t, centre))
    if not cells:
        cells.append((next(iter(referential.competencies)), types[0], profile.ability))
    repeats = 1.5 if target is None else max(1.0, target / len(cells))
    if target is not None and target < len(cells):
        cells = rng.sample(cells, target)
    records = []
    for cid, t, centre in cells:
        count = max(1, round(rng.uniform(1, 2 * repeats - 1)))
        for k in range(1, count + 1):
            records.append(_record(rng, agent, cid, t, k, centre))
    return records


def _record(
    rng: random.Random, agent: str, cid: str, etype: str, k: int, centre: float
) -> dict[str, Any]:
    raw = min(100.0, max(0.0, rng.gauss(centre, 7)))
    score = Decimal(round(raw)) if rng.random() < 0.7 else Decimal(f"{raw:.1f}")
    moment = _START + timedelta(minutes=rng.randrange(0, 60 * 24 * 90))
    record: dict[str, Any] = {
        "evidenceId": f"{agent}-{cid}-{etype}-{k}",
        "agentId": agent,
        "competencyId": cid,
        "evidenceType": etype,
        "rawScore": score,
        "timestamp": moment.isoformat(),
        "context": rng.choice(_SONGS),
    }
    if rng.random() < 0.8:
        record["validator"] = rng.choice(_VALIDATORS)
    return record


@dataclass(frozen=True)
class CohortFiles:
    """What :func:`write_cohort` wrote."""

    evidence: Path
    roster: Path
    learners: int
    records: int
    without_evidence: int


def write_cohort(
    out: Path,
    referential: Referential,
    agents: int,
    seed: int = 0,
    evidence_per_learner: int | None = None,
    *,
    force: bool = False,
) -> CohortFiles:
    """Write the cohort as JSON Lines to *out*, and its roster to ``<stem>.agents.txt``.

    The roster lists every learner, those without evidence included (an evidence export
    cannot name them), so ``batch --file`` can score the whole cohort. Existing files are
    replaced only with *force*; both are written atomically.
    """
    if agents < 1:
        raise ConfigError(f"--agents must be at least 1, not {agents}")
    out = Path(out)
    roster = out.with_name(f"{out.stem}.agents.txt")
    for path in (out, roster):
        if path.exists() and not force:
            raise ConfigError(f"{path} already exists: give --force to replace it")
    records = empty = 0
    with atomic_file(out, "the cohort") as evidence, atomic_file(roster, "the roster") as ids:
        for agent, learner in generate_cohort(referential, agents, seed, evidence_per_learner):
            ids.write(agent.encode() + b"\n")
            empty += not learner
            for record in learner:
                evidence.write(canonical(record) + b"\n")
            records += len(learner)
    return CohortFiles(out, roster, agents, records, empty)
