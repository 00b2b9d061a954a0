"""The scoring core against scoring.md: worked examples, §9 learners, and its laws."""

from __future__ import annotations

import copy
import random
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceredis.referential import parse_referential
from ceredis.scoring import evaluate, round_half_up
from ledger.canonical import canonical
from tests.builders import every_competency, raw, record

LEVELS = ["PRE_A2", "A2", "B1", "B2", "C1"]


def competency(result: dict, cid: str) -> dict:
    return result["competencies"][cid]


# -- §3 worked examples ---------------------------------------------------------------


def test_design_example_competency_5_3(referential):
    """P2 80, P3 65, P4 70 on 5.3 give 0.30×80 + 0.35×65 + 0.20×70 = 60.75."""
    result = evaluate(
        "L1",
        raw([record("5.3", "P2", 80), record("5.3", "P3", 65), record("5.3", "P4", 70)]),
        referential,
    )
    assert competency(result, "5.3")["score"] == Decimal("60.75")
    assert competency(result, "5.3")["status"] == "partiel"


def test_single_p2_evidence_gives_21(referential):
    """A single P2 evidence of 70 gives 21.00."""
    result = evaluate("L1", raw([record("5.1", "P2", 70)]), referential)
    assert str(competency(result, "5.1")["score"]) == "21.00"


def test_three_p2_evidence_use_the_exact_mean(referential):
    """Three P2 evidence 10, 10, 11 on 5.1 give 0.30 × 31/3 = 3.10."""
    records = [record("5.1", "P2", s, eid=f"e{i}") for i, s in enumerate([10, 10, 11])]
    result = evaluate("L1", raw(records), referential)
    assert str(competency(result, "5.1")["score"]) == "3.10"
    assert competency(result, "5.1")["evidenceCount"] == 3


def test_a_type_contributes_at_most_its_weight(referential):
    """Many P1 records at 100 still give P1's weight, 15 points (the cap holds)."""
    records = [record("1.1", "P1", 100, eid=f"e{i}") for i in range(12)]
    result = evaluate("L1", raw(records), referential)
    assert competency(result, "1.1")["score"] == Decimal("15.00")


def test_decimal_text_is_taken_exactly(referential):
    """72.1 is exactly 72.1: 0.30 × 72.1 = 21.63, not a binary approximation."""
    result = evaluate("L1", raw([record("5.1", "P2", Decimal("72.1"))]), referential)
    assert str(competency(result, "5.1")["score"]) == "21.63"


# -- §4 status, §5 domains --------------------------------------------------------------


def test_incomplete_competency_is_reported_but_excluded_from_its_domain(referential):
    """5.3 lacks P4: its score is reported, status incomplet, and D5 ignores it."""
    records = [record("5.3", "P2", 100), record("5.3", "P3", 100), record("5.1", "P2", 100)]
    result = evaluate("L1", raw(records), referential)
    c53 = competency(result, "5.3")
    assert (str(c53["score"]), c53["status"]) == ("65.00", "incomplet")
    assert c53["reasons"] == ["missing required evidence type P4"]
    # D5 = 10 × 30.00 / 100 (5.1 only; 5.3 counts 0 but stays in the denominator)
    assert str(result["domainScores"]["D5"]) == "3.00"


def test_status_thresholds_apply_to_the_rounded_score(referential):
    """A competency at exactly 75.00 is acquis; at 50.00 partiel; below, non acquis."""

    # 5.6 requires only P4 (weight 20); P2 (30), P3 (35) and P1 (15) fill the rest.
    def status(p1, p2, p3, p4):
        records = [
            record("5.6", t, s)
            for t, s in zip(("P1", "P2", "P3", "P4"), (p1, p2, p3, p4), strict=True)
        ]
        return competency(evaluate("L1", raw(records), referential), "5.6")["status"]

    assert status(100, 100, 100, 100) == "acquis"
    assert status(0, 100, 100, 50) == "acquis"  # 30 + 35 + 10 = 75.00
    assert status(0, 100, 0, 100) == "partiel"  # 30 + 20 = 50.00
    assert status(0, 0, 0, Decimal("249.95") / 5) == "non acquis"  # 9.998 → 10.00


def test_every_domain_is_always_present(referential):
    """D1–D5 appear with 0.00 even when the learner has evidence in one domain only."""
    result = evaluate("L1", raw([record("1.1", "P1", 50)]), referential)
    assert result["domainScores"] == {d: Decimal("0.00") for d in ("D1", "D2", "D3", "D4", "D5")}
    assert len(result["competencies"]) == 19


# -- §9 worked learners ---------------------------------------------------------------

NINE = {
    "A": (
        {"D1": 90, "D2": 90, "D3": 90, "D4": 90, "D5": 90},
        "540.00",
        "C1",
        "C1",
        [
            [],
        ],
    ),
    "C": (
        {"D1": 95, "D2": 95, "D3": 95, "D4": 95, "D5": 62},
        "530.40",
        "C1",
        "B2",
        [["C1 refused: D5 62.00 < 70"], []],
    ),
    "F": (
        {"D1": 100, "D2": 100, "D3": 100, "D4": 100, "D5": 55},
        "546.00",
        "C1",
        "B1",
        [["C1 refused: D5 55.00 < 70"], ["B2 refused: D5 55.00 < 60"], []],
    ),
}


@pytest.mark.parametrize("name", sorted(NINE))
def test_worked_learners(referential, name):
    """scoring.md §9: learners A, C and F get the listed score, band and granted level."""
    scores, total, band, granted, reasons = NINE[name]
    result = evaluate("L1", raw(every_competency(referential, scores)), referential)
    assert (str(result["ceredisScore"]), result["bandLevel"], result["cecrlLevel"]) == (
        total,
        band,
        granted,
    )
    assert [step["reasons"] for step in result["levelDecision"]] == reasons


def test_worked_learner_single(referential):
    """scoring.md §9 'single': 1.1 scores 15.00 but is incomplet, so 0.00 and PRE_A2."""
    result = evaluate("L1", raw([record("1.1", "P1", 100)]), referential)
    assert (str(result["ceredisScore"]), result["bandLevel"], result["cecrlLevel"]) == (
        "0.00",
        "PRE_A2",
        "PRE_A2",
    )
    assert competency(result, "1.1")["score"] == Decimal("15.00")
    assert competency(result, "1.1")["status"] == "incomplet"
    assert competency(result, "1.1")["reasons"] == ["missing required evidence type P2"]


def test_c1_refused_without_p4_under_a_referential_that_allows_it(referential):
    """Rules are data: with C1 from 450 and only P2 required, no P4 means 'no P4 evidence'."""
    document = copy.deepcopy(dict(referential.document))
    for c in document["competencies"]:
        c["requiredEvidenceTypes"] = ["P2"]
    document["bands"][-1]["min"] = 450
    document["levelRules"]["C1"][0]["value"] = 450
    relaxed = parse_referential(document)
    records = [r for r in every_competency(relaxed, 100) if r["evidenceType"] != "P4"]
    result = evaluate("L1", raw(records), relaxed)
    assert (str(result["ceredisScore"]), result["bandLevel"]) == ("480.00", "C1")
    assert result["levelDecision"][0]["reasons"] == ["C1 refused: no P4 evidence"]
    assert result["cecrlLevel"] == "B2"


def test_status_and_skipped(referential):
    """No evidence at all is SKIPPED with the reason 'no evidence'."""
    result = evaluate("L9", [], referential)
    assert (result["status"], result["reason"], result["ceredisScore"]) == (
        "SKIPPED",
        "no evidence",
        None,
    )


def test_result_carries_the_section_10_fields(referential):
    """An OK result has exactly the §10 field names, scores written with two decimals."""
    result = evaluate("L1", raw(every_competency(referential, 90)), referential)
    assert set(result) == {
        "agentId",
        "status",
        "ceredisScore",
        "bandLevel",
        "cecrlLevel",
        "domainScores",
        "competencies",
        "evidenceTypesPresent",
        "levelDecision",
        "referentialVersion",
        "referentialHash",
        "engineVersion",
    }
    assert set(result["competencies"]["5.3"]) == {
        "score",
        "status",
        "evidenceCount",
        "evidenceTypes",
        "reasons",
    }
    text = canonical(result).decode()
    assert '"ceredisScore":540.00' in text and '"D5":90.00' in text
    assert result["referentialVersion"] == "ceredis-1.1"
    assert result["referentialHash"] == referential.hash


# -- rounding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Fraction(5, 1000), "0.01"),
        (Fraction(4999, 1000), "5.00"),
        (Fraction(2495, 1000), "2.50"),
        (Fraction(1, 3), "0.33"),
        (Fraction(2, 3), "0.67"),
        (Fraction(0), "0.00"),
        (Fraction(-5, 1000), "-0.01"),
        (Fraction(600), "600.00"),
    ],
)
def test_round_half_up(value, expected):
    """Ties round away from zero; everything else to the nearest cent."""
    assert str(round_half_up(value)) == expected


@given(st.integers(min_value=0, max_value=1999))
def test_half_up_at_a_boundary_through_scoring(referential, n):
    """One P4 evidence of (2n+1)/40 scores exactly n.nn5 before rounding, and rounds up."""
    score = Decimal(2 * n + 1) / Decimal(40)
    result = evaluate("L1", raw([record("5.6", "P4", score)]), referential)
    assert competency(result, "5.6")["score"] == Decimal(n + 1) / 100


# -- laws (hypothesis) ----------------------------------------------------------------

TYPES = ["P1", "P2", "P3", "P4"]
scores = st.one_of(
    st.integers(min_value=0, max_value=100),
    st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False),
)


@st.composite
def learners(draw):
    """Valid evidence for one learner: a random subset of competency × type cells."""
    from ceredis.referential import bundled_referential

    ids = list(bundled_referential().competencies)
    cells = draw(
        st.lists(st.tuples(st.sampled_from(ids), st.sampled_from(TYPES)), min_size=1, max_size=60)
    )
    return [record(cid, etype, draw(scores), eid=f"e{i}") for i, (cid, etype) in enumerate(cells)]


@settings(max_examples=150, deadline=None)
@given(learners(), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_evidence_order(referential, records, rnd):
    """Shuffling the evidence gives the same canonical bytes."""
    shuffled = list(records)
    rnd.shuffle(shuffled)
    first = canonical(evaluate("L1", raw(records), referential))
    assert canonical(evaluate("L1", raw(shuffled), referential)) == first


@settings(max_examples=150, deadline=None)
@given(learners())
def test_scores_stay_within_bounds(referential, records):
    """Competency and domain scores lie in 0–100, the global score in 0–600."""
    result = evaluate("L1", raw(records), referential)
    assert 0 <= result["ceredisScore"] <= 600
    assert all(0 <= v <= 100 for v in result["domainScores"].values())
    assert all(0 <= c["score"] <= 100 for c in result["competencies"].values())


@settings(max_examples=150, deadline=None)
@given(learners(), st.data())
def test_raising_a_raw_score_never_lowers_that_competency(referential, records, data):
    """Raising one raw score never lowers the score of its competency."""
    i = data.draw(st.integers(min_value=0, max_value=len(records) - 1))
    raised = [dict(r) for r in records]
    old = Decimal(raised[i]["rawScore"])
    raised[i]["rawScore"] = data.draw(
        st.decimals(min_value=old, max_value=100, places=2, allow_nan=False)
    )
    cid = records[i]["competencyId"]
    before = competency(evaluate("L1", raw(records), referential), cid)["score"]
    after = competency(evaluate("L1", raw(raised), referential), cid)["score"]
    assert after >= before


@settings(max_examples=150, deadline=None)
@given(learners())
def test_granted_level_never_exceeds_the_band(referential, records):
    """The cascade only steps down: the granted level is at most the band."""
    result = evaluate("L1", raw(records), referential)
    assert LEVELS.index(result["cecrlLevel"]) <= LEVELS.index(result["bandLevel"])


@settings(max_examples=50, deadline=None)
@given(learners())
def test_same_input_same_canonical_bytes(referential, records):
    """Evaluating the same records twice yields byte-identical canonical results."""
    assert canonical(evaluate("L1", raw(records), referential)) == canonical(
        evaluate("L1", raw([dict(r) for r in records]), referential)
    )


def test_granted_level_cascade_over_a_random_cohort(referential):
    """Across a seeded random cohort every level decision ends on a passed step."""
    rng = random.Random(7)
    for _ in range(30):
        records = every_competency(
            referential, {d: rng.randint(40, 100) for d in ("D1", "D2", "D3", "D4", "D5")}
        )
        result = evaluate("L1", raw(records), referential)
        steps = result["levelDecision"]
        assert steps[0]["level"] == result["bandLevel"]
        assert steps[-1]["passed"] and steps[-1]["level"] == result["cecrlLevel"]
        assert not any(s["passed"] for s in steps[:-1])
