"""A sample cohort served by Ralph validates to byte-identical normalised evidence."""

from __future__ import annotations

from collections.abc import Callable

from ceredis.evidence import RawEvidence, submitted, validate
from ceredis.referential import bundled_referential
from ceredis.sample import generate_cohort
from ceredis.sources.xapi import XapiSource
from doubles.ralph import RalphLRS
from doubles.xapi_fixtures import evidence_to_statements
from ledger.canonical import canonical

Open = Callable[..., XapiSource]


def normalised(agent: str, records: list[RawEvidence]) -> bytes:
    """The learner's validated evidence (or problems) as canonical bytes."""
    evidence, problems = validate(agent, [submitted(r) for r in records], bundled_referential())
    return canonical({"evidence": [e.to_json() for e in evidence], "problems": problems})


def test_sample_cohort_matches_the_records_it_came_from(ralph: RalphLRS, open_source: Open) -> None:
    """Same cohort, as records and through Ralph: identical normalised evidence per learner."""
    cohort = dict(generate_cohort(bundled_referential(), 12, seed=7, evidence_per_learner=25))
    cohort = {f"coh-{agent}": records for agent, records in cohort.items()}
    for agent, records in cohort.items():
        for record in records:
            record["agentId"] = agent
        ralph.add(evidence_to_statements(records))
    source = open_source(ralph)
    for agent, records in cohort.items():
        expected = normalised(agent, [RawEvidence(r, "") for r in records])
        assert normalised(agent, source.fetch(agent)) == expected
        assert b'"problems":[]' in expected
    with_evidence = {agent for agent, records in cohort.items() if records}
    assert with_evidence <= set(source.agents())


def test_an_incomplete_statement_makes_an_error_naming_it(
    ralph: RalphLRS, open_source: Open
) -> None:
    """The core's problems name the statement that lacks a score."""
    (agent, records), *_ = generate_cohort(bundled_referential(), 1, seed=3, evidence_per_learner=3)
    agent = "coh-incomplete"
    statements = evidence_to_statements({**r, "agentId": agent} for r in records)
    del statements[0]["result"]
    ralph.add(statements)
    evidence, problems = validate(
        agent, [submitted(r) for r in open_source(ralph).fetch(agent)], bundled_referential()
    )
    assert evidence == []
    assert problems == [
        f"evidence {records[0]['evidenceId']} (statement {statements[0]['id']}): "
        "rawScore is missing (no evidence without a raw score)"
    ]
