"""Evidence validation (scoring.md §1): every invalid class named, nothing scored on a subset."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ceredis.evidence import RawEvidence, submitted, validate
from ceredis.scoring import evaluate
from tests.builders import raw, record

URL = "https://cass.ceredis.net/api/data/schema.cassproject.org.0.4.Competency/"
UUID_53 = "32144434-c455-4f52-ae20-aaa759e4448e"


def error_of(referential, records: list[dict]) -> str:
    """The ERROR message of a learner holding one valid record plus *records*."""
    result = evaluate("L1", raw([record("1.1", "P1", 50, eid="good"), *records]), referential)
    assert result["status"] == "ERROR"
    assert result["ceredisScore"] is None  # never a score computed on the valid subset
    return result["error"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rawScore": None}, "evidence bad (line 2): rawScore is missing (no evidence without"),
        ({"rawScore": True}, "evidence bad (line 2): rawScore must be a number, found the boolean"),
        (
            {"rawScore": "72"},
            "evidence bad (line 2): rawScore must be a number, found the string '72'",
        ),
        (
            {"rawScore": float("nan")},
            "evidence bad (line 2): rawScore must be a finite number, found NaN",
        ),
        ({"rawScore": Decimal("Infinity")}, "rawScore must be a finite number, found Infinity"),
        ({"rawScore": 100.5}, "evidence bad (line 2): rawScore 100.5 is outside 0–100"),
        ({"rawScore": -1}, "evidence bad (line 2): rawScore -1 is outside 0–100"),
        (
            {"evidenceType": "P5"},
            "evidence bad (line 2): unknown evidenceType 'P5' (expected one of P1, P2, P3, P4)",
        ),
        ({"evidenceType": {"a": 1}}, "unknown evidenceType an object (expected one of P1, P2"),
        ({"evidenceType": ["P1"]}, "unknown evidenceType an array (expected one of P1, P2"),
        ({"competencyId": "9.9"}, "evidence bad (line 2): unknown competency '9.9'"),
        ({"competencyId": ""}, "evidence bad (line 2): competencyId must be a non-empty string"),
        (
            {"evidenceId": ""},
            "evidence at line 2: evidenceId must be a non-empty string, found an empty string",
        ),
        (
            {"evidenceId": None},
            "evidence at line 2: evidenceId must be a non-empty string, found nothing",
        ),
        ({"agentId": "L2"}, "evidence bad (line 2): agentId 'L2' is not this learner ('L1')"),
        ({"timestamp": "2026-10-01T09:30:00"}, "timestamp '2026-10-01T09:30:00' has no UTC offset"),
        ({"timestamp": "yesterday"}, "timestamp 'yesterday' is not ISO-8601"),
        ({"context": 3}, "context must be a string when present, found 3"),
        ({"evidenceId": "a\nb"}, "evidenceId 'a\\nb' holds the control character U+000A"),
        ({"evidenceId": "a\x00"}, "evidenceId 'a\\x00' holds the control character U+0000"),
        ({"evidenceId": "a\x7f"}, "evidenceId 'a\\x7f' holds the control character U+007F"),
        ({"evidenceId": "a\x85"}, "evidenceId 'a\\x85' holds the control character U+0085"),
        ({"evidenceId": "a\u2028"}, "holds the control character U+2028"),
        ({"agentId": "L1\x1b"}, "agentId 'L1\\x1b' holds the control character U+001B"),
        (
            {"timestamp": "0001-01-01T00:00:00+14:00"},
            "timestamp '0001-01-01T00:00:00+14:00' is outside the years 1–9999 in UTC",
        ),
        (
            {"timestamp": "9999-12-31T23:59:59-14:00"},
            "timestamp '9999-12-31T23:59:59-14:00' is outside the years 1–9999 in UTC",
        ),
        (
            {"rawScore": {"$unreadable": "a number of 5,000 digits (at most 100 are read)"}},
            "evidence bad (line 2): rawScore holds a number of 5,000 digits (at most 100 are read)",
        ),
        (
            {"context": [[{"$unreadable": "arrays or objects nested deeper than 100 levels"}]]},
            "evidence bad (line 2): context holds arrays or objects nested deeper than 100 levels",
        ),
        ({"evidenceId": "x" * 10_000, "rawScore": 101}, "evidence xxxx"),
        ({"competencyId": "y" * 10_000}, "unknown competency 'yyyyy"),
    ],
)
def test_each_invalid_class_has_its_message(referential, change, message):
    """Each broken rule of §1 makes the learner ERROR with a message naming the record."""
    bad = {**record("5.1", "P2", 50, eid="bad"), **change}
    if change.get("rawScore", 0) is None:
        del bad["rawScore"]
    text = error_of(referential, [bad])
    assert message in text
    assert len(text) < 2_000 + len(str(bad["evidenceId"] or ""))  # long values are cut


def test_conflicting_duplicate_is_an_error_naming_both_places(referential):
    """The same evidenceId with different content is an error naming both lines."""
    message = error_of(
        referential,
        [record("5.1", "P2", 50, eid="dup"), record("5.1", "P2", 60, eid="dup")],
    )
    assert "evidence dup (line 2 and line 3): the same evidenceId with different content" in message
    assert "rawScore 50 vs 60" in message


def test_identical_duplicate_is_one_record(referential):
    """The same record twice (e.g. repeated across pages) counts once."""
    once = evaluate("L1", raw([record("5.1", "P2", 70, eid="x")]), referential)
    twice = evaluate(
        "L1",
        raw([record("5.1", "P2", 70, eid="x"), record("5.1", "P2", Decimal("70.0"), eid="x")]),
        referential,
    )
    assert once == twice
    assert twice["competencies"]["5.1"]["evidenceCount"] == 1


def test_all_problems_are_listed(referential):
    """Every invalid record is reported, not only the first."""
    message = error_of(
        referential,
        [
            {**record("5.1", "P2", 50, eid="a"), "rawScore": 200},
            {**record("5.1", "P2", 50, eid="b"), "evidenceType": "P9"},
        ],
    )
    assert message.startswith("2 invalid evidence records: ")
    assert "evidence a (line 2)" in message and "evidence b (line 3)" in message


@pytest.mark.parametrize(
    "ref",
    [
        "5.3",
        UUID_53,
        UUID_53.upper(),
        URL + UUID_53,
        URL + UUID_53 + "/1700000000000",
        "http://127.0.0.1:8080/api/data/schema.cassproject.org.0.4.Competency/" + UUID_53,
    ],
)
def test_competency_resolved_by_id_uuid_or_url(referential, ref):
    """A competency is named by X.Y, its CaSS uuid, or its CaSS URL (with or without version)."""
    evidence, problems = validate(
        "L1", [submitted(r) for r in raw([record(ref, "P2", 50)])], referential
    )
    assert problems == []
    assert evidence[0].competency_id == "5.3"


@pytest.mark.parametrize(
    "ref",
    [
        URL + "00000000-0000-0000-0000-000000000000",
        URL + UUID_53 + "/v2",
        "https://cass.ceredis.net/api/data/schema.org.Person/" + UUID_53,
        "5.30",
        "ftp://x/" + UUID_53,
    ],
)
def test_unresolvable_competency_references(referential, ref):
    """Anything else is an unknown competency."""
    _, problems = validate("L1", [submitted(r) for r in raw([record(ref, "P2", 50)])], referential)
    assert len(problems) == 1 and "unknown competency" in problems[0]


def test_normalisation(referential):
    """Scores lose trailing zeros, timestamps become UTC, optional fields stay optional."""
    evidence, _ = validate(
        "L1",
        [submitted(RawEvidence(record("5.1", "P2", Decimal("72.10"), validator="t:1"), "x"))],
        referential,
    )
    (e,) = evidence
    assert (e.raw_score, e.timestamp, e.validator, e.context) == (
        Decimal("72.1"),
        "2026-10-01T07:30:00Z",
        "t:1",
        None,
    )
    assert "context" not in e.to_json()


def test_submitted_form_is_json_safe():
    """Floats become exact decimals, non-finite numbers and unknown types become tags."""
    form = submitted(
        RawEvidence({"rawScore": 72.1, "a": float("-inf"), "b": {1, 2}, "c": (1,)}, "w")
    )
    assert form == {
        "fields": {
            "rawScore": Decimal("72.1"),
            "a": {"$number": "-Infinity"},
            "b": {"$unsupported": "set"},
            "c": [1],
        },
        "where": "w",
    }
    assert submitted(RawEvidence(form["fields"], "w")) == form  # idempotent
