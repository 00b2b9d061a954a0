"""Builders of evidence records for tests."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ceredis.config import Settings, load_settings
from ceredis.evidence import RawEvidence
from ceredis.referential import Referential

TIMESTAMP = "2026-10-01T09:30:00+02:00"


def settings_from(env: Mapping[str, str]) -> Settings:
    """The settings *env* gives, with the test run's (empty) config file."""
    return load_settings(env={"CEREDIS_CONFIG": os.environ["CEREDIS_CONFIG"], **env})


def record(
    competency: str,
    etype: str,
    score: object,
    *,
    agent: str = "L1",
    eid: str | None = None,
    **extra: object,
) -> dict[str, object]:
    """One evidence record with the §1 fields (id derived from the rest unless given)."""
    return {
        "evidenceId": eid or f"{agent}-{competency}-{etype}-{score}",
        "agentId": agent,
        "competencyId": competency,
        "evidenceType": etype,
        "rawScore": score,
        "timestamp": TIMESTAMP,
        **extra,
    }


def raw(records: list[dict[str, object]]) -> list[RawEvidence]:
    """Records as a source would deliver them, located by position."""
    return [RawEvidence(r, f"line {i}") for i, r in enumerate(records, start=1)]


def every_competency(
    referential: Referential, score_of: dict[str, object] | object, agent: str = "L1"
) -> list[dict[str, object]]:
    """P1–P4 evidence on every competency; *score_of* maps a domain id to a score."""
    records = []
    for cid, competency in referential.competencies.items():
        score = score_of[competency.domain] if isinstance(score_of, dict) else score_of
        for etype in referential.evidence_types:
            records.append(record(cid, etype, score, agent=agent))
    return records
