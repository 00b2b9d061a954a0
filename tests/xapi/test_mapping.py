"""The statement ↔ evidence mapping and the URI rules, without a server."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceredis.errors import ConfigError
from ceredis.sources.xapi import (
    DEFAULT_HOME_PAGE,
    EVIDENCE_TYPE,
    RAW_SCORE_TEXT,
    XapiSource,
    _effective,
    check_uri,
    raw_score,
    statement_to_evidence,
)
from doubles.xapi_fixtures import evidence_to_statement, statement_id
from ledger.canonical import canonical
from tests.builders import settings_from

CASS = "https://cass.ceredis.net/api/data/schema.cassproject.org.0.4.Competency/"


def through_json(statement: dict[str, Any]) -> Any:
    """The statement as an LRS that keeps JSON number text would return it."""
    return json.loads(canonical(statement), parse_float=Decimal)


RECORD = {
    "evidenceId": "ev-1",
    "agentId": "learner-1",
    "competencyId": "5.3",
    "evidenceType": "P2",
    "rawScore": Decimal("72.10"),
    "timestamp": "2026-03-01T10:00:00+01:00",
    "context": "La Bohème",
    "validator": "prof-dupont",
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"rawScore": Decimal("72.1")},
        {"rawScore": 85},
        {"rawScore": 0},
        {"rawScore": Decimal("100.00")},
        {"competencyId": "32144434-c455-4f52-ae20-aaa759e4448e"},
        {"competencyId": CASS + "32144434-c455-4f52-ae20-aaa759e4448e"},
        {"competencyId": CASS + "32144434-c455-4f52-ae20-aaa759e4448e/1700000000000"},
        {"agentId": "mailto:learner@example.org"},
        {"context": None, "validator": None},
    ],
)
def test_fixture_statement_maps_back_to_the_same_fields(changes: dict[str, Any]) -> None:
    """evidence → statement → evidence gives identical fields, decimal text included."""
    record = {k: v for k, v in {**RECORD, **changes}.items() if v is not None}
    back = statement_to_evidence(through_json(evidence_to_statement(record)))
    assert dict(back.fields) == record
    assert str(back.fields["rawScore"]) == str(record["rawScore"])
    assert back.where == f"statement {statement_id(record)}"


@given(
    score=st.one_of(
        st.integers(0, 100),
        st.decimals(min_value=0, max_value=100, allow_nan=False, allow_infinity=False),
    ),
    agent=st.text(min_size=1, max_size=20),
    evidence_id=st.text(min_size=1, max_size=20),
)
def test_round_trip_property(score: Any, agent: str, evidence_id: str) -> None:
    """Any score 0–100 and any learner/evidence id strings survive the mapping exactly."""
    record = {**RECORD, "rawScore": score, "agentId": agent, "evidenceId": evidence_id}
    back = statement_to_evidence(through_json(evidence_to_statement(record)))
    assert dict(back.fields) == record
    assert str(back.fields["rawScore"]) == str(score)


def test_statement_ids_are_deterministic_and_per_learner() -> None:
    """The same record always gets the same id; two learners' "ev-1" never collide."""
    assert statement_id(RECORD) == statement_id(dict(RECORD))
    assert statement_id(RECORD) != statement_id({**RECORD, "agentId": "learner-2"})


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        ({"raw": Decimal("72.10")}, "72.10"),
        ({"raw": 17, "min": 0, "max": 20}, "85"),
        ({"raw": Decimal("7.5"), "min": 5, "max": 10}, "50.0"),
        ({"raw": Decimal("0.5"), "min": 0, "max": 1}, "50.0"),
        ({"scaled": Decimal("0.7210")}, "72.10"),
        ({"scaled": 1}, "100"),
        ({"raw": Decimal("72.1"), "scaled": Decimal("0.9")}, "72.1"),
    ],
)
def test_raw_score_normalises_exactly(score: dict[str, Any], expected: str) -> None:
    """raw on its min–max scale, else scaled × 100, computed in Decimal without loss."""
    value = raw_score({"score": score})
    assert isinstance(value, int | Decimal)
    assert str(value) == expected


def test_raw_score_text_survives_an_lrs_that_re_encodes_as_doubles() -> None:
    """The extension gives the exact text when result.score.raw came back as a double."""
    result = {
        "score": {"raw": Decimal("33.333333333333336")},
        "extensions": {RAW_SCORE_TEXT: "33.333333333333333333"},
    }
    assert str(raw_score(result)) == "33.333333333333333333"
    scaled = {
        "score": {"scaled": Decimal("0.7210000000000001")},
        "extensions": {RAW_SCORE_TEXT: "72.10"},
    }
    assert str(raw_score(scaled)) == "72.10"


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        ({"score": {"raw": 1, "min": 0, "max": 3}}, "no exact 0–100"),
        ({"score": {"raw": 1, "min": 5, "max": 5}}, "is not a scale"),
        ({"score": {"raw": "72"}}, "72"),
        (
            {"score": {"raw": Decimal("72.1")}, "extensions": {RAW_SCORE_TEXT: "72.2"}},
            "raw-score extension says '72.2'",
        ),
        (
            {"score": {"raw": Decimal("72.1")}, "extensions": {RAW_SCORE_TEXT: Decimal("NaN")}},
            "raw-score extension says Decimal('NaN')",
        ),
    ],
)
def test_unusable_scores_are_passed_on_as_text_that_says_why(
    result: dict[str, Any], problem: str
) -> None:
    """A score that cannot be read exactly becomes a string (the core rejects it)."""
    value = raw_score(result)
    assert isinstance(value, str)
    assert problem in value


def test_statements_with_ids_that_are_not_strings_are_kept_and_void_nothing() -> None:
    """An id of the wrong kind (a list, an object) is the core's to name, not a crash."""
    odd = {"id": ["s1"], "timestamp": "2026-10-01T07:30:00Z"}
    other = {"id": {"n": 1}, "timestamp": "2026-10-01T08:30:00Z"}
    voiding = {
        "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
        "object": {"objectType": "StatementRef", "id": ["s1"]},
    }
    assert _effective(iter([odd, voiding, other])) == [odd, other]


def test_a_result_without_score_has_no_raw_score() -> None:
    """No result.score at all: the field is missing, and the core says so."""
    assert raw_score({}) is None
    assert raw_score({"success": True}) is None


def test_missing_parts_leave_fields_out() -> None:
    """A statement with no result, an agent object and no type gives a partial record."""
    statement = {
        "id": "3f1c7a52-0000-4000-8000-000000000001",
        "actor": {"objectType": "Agent", "account": {"homePage": DEFAULT_HOME_PAGE, "name": "a"}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
        "object": {"objectType": "Agent", "mbox": "mailto:x@example.org"},
        "timestamp": "2026-03-01T10:00:00Z",
    }
    evidence = statement_to_evidence(statement)
    assert dict(evidence.fields) == {
        "evidenceId": statement["id"],
        "agentId": "a",
        "timestamp": "2026-03-01T10:00:00Z",
    }
    assert evidence.where == f"statement {statement['id']}"


def test_standard_fields_are_used_without_our_extensions() -> None:
    """A foreign statement: object.id, registration and instructor fill the fields."""
    statement = {
        "id": "3f1c7a52-0000-4000-8000-000000000002",
        "actor": {"mbox": "mailto:eve@example.org"},
        "object": {"id": CASS + "ce92449c-c455-4c60-b917-c0e943da9ad4"},
        "result": {"score": {"scaled": Decimal("0.65")}},
        "context": {
            "registration": "6b1e0a8e-3c1d-4b7e-9a41-2f0c7d9e8a10",
            "instructor": {"account": {"homePage": "https://lms.example.org", "name": "t-42"}},
            "extensions": {EVIDENCE_TYPE: "P1"},
        },
        "timestamp": "2026-03-01T10:00:00Z",
    }
    assert dict(statement_to_evidence(statement).fields) == {
        "evidenceId": statement["id"],
        "agentId": "mailto:eve@example.org",
        "competencyId": CASS + "ce92449c-c455-4c60-b917-c0e943da9ad4",
        "evidenceType": "P1",
        "rawScore": Decimal("65"),
        "timestamp": "2026-03-01T10:00:00Z",
        "context": "6b1e0a8e-3c1d-4b7e-9a41-2f0c7d9e8a10",
        "validator": "t-42",
    }


def test_an_account_on_another_home_page_is_not_our_learner() -> None:
    """agentId comes from an account only when its homePage is the configured one."""
    statement = {"id": "x", "actor": {"account": {"homePage": "https://other.org", "name": "a"}}}
    assert "agentId" not in statement_to_evidence(statement).fields


# -- URIs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("xapi+https://lrs.example.org/xAPI/", "xapi+https://lrs.example.org/xAPI/"),
        ("xapi+https://lrs.example.org/xAPI", "xapi+https://lrs.example.org/xAPI/"),
        ("xapi+http://127.0.0.1:8100/xAPI/?limit=50", "xapi+http://127.0.0.1:8100/xAPI/"),
        (
            "xapi+https://lrs.example.org/xAPI/?homePage=https%3A%2F%2Fent.example.org",
            "xapi+https://lrs.example.org/xAPI/",
        ),
    ],
)
def test_check_uri_accepts_and_names(uri: str, shown: str) -> None:
    """A good URI gives a display name (no query string, path ending in /)."""
    assert check_uri(uri) == shown


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("https://lrs.example.org/xAPI/", "must start with xapi+https://"),
        ("xapi+ftp://lrs.example.org/xAPI/", "must start with xapi+https://"),
        ("xapi+https:///xAPI/", "has no host"),
        ("xapi+https://lrs.example.org/xAPI/?verb=x", "unknown option 'verb'"),
        ("xapi+https://lrs.example.org/xAPI/?limit=0", "limit='0'"),
        ("xapi+https://lrs.example.org/xAPI/?limit=ten", "limit='ten'"),
        ("xapi+https://lrs.example.org/xAPI/?homePage=learners", "must be an http(s) URL"),
        ("xapi+https://lrs.example.org:99999/xAPI/", "malformed"),
        ("xapi+https://bob:hunter2@lrs.example.org/xAPI/", "credentials in the source URI"),
    ],
)
def test_check_uri_refuses_with_a_reason(uri: str, problem: str) -> None:
    """A bad URI is a ConfigError naming the problem (and never echoing a password)."""
    with pytest.raises(ConfigError) as caught:
        check_uri(uri)
    assert problem in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_half_configured_credentials_are_refused() -> None:
    """A username without a password (or the reverse) is a configuration error."""
    with pytest.raises(ConfigError, match="set both CEREDIS_XAPI_USERNAME"):
        XapiSource.from_uri(
            "xapi+https://lrs.example.org/xAPI/",
            settings=settings_from({"CEREDIS_XAPI_USERNAME": "u"}),
        )


def test_a_colon_in_the_username_is_refused() -> None:
    """Basic auth cannot carry a user-id with ':'; say so instead of failing at the LRS."""
    env = {"CEREDIS_XAPI_USERNAME": "a:b", "CEREDIS_XAPI_PASSWORD": "pw-long"}
    with pytest.raises(ConfigError, match="must not contain ':'"):
        XapiSource.from_uri("xapi+https://lrs.example.org/xAPI/", settings=settings_from(env))


def test_home_page_comes_from_the_uri_then_the_environment() -> None:
    """The URI's homePage option wins over CEREDIS_XAPI_HOMEPAGE, which wins over the default."""
    env = {"CEREDIS_XAPI_HOMEPAGE": "https://env.example.org"}
    with XapiSource.from_uri(
        "xapi+https://l.example.org/xAPI/", settings=settings_from({})
    ) as source:
        assert source.home_page == DEFAULT_HOME_PAGE
    with XapiSource.from_uri(
        "xapi+https://l.example.org/xAPI/", settings=settings_from(env)
    ) as source:
        assert source.home_page == "https://env.example.org"
    uri = "xapi+https://l.example.org/xAPI/?homePage=https://uri.example.org"
    with XapiSource.from_uri(uri, settings=settings_from(env)) as source:
        assert source.home_page == "https://uri.example.org"
