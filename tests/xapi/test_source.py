"""The xAPI source against a real Ralph LRS (no mocks): mapping, paging, errors."""

from __future__ import annotations

import json
import multiprocessing
import socket
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from ceredis.errors import SourceError
from ceredis.sources.ratelimit import RateLimiter
from ceredis.sources.xapi import DEFAULT_HOME_PAGE, XapiSource, _decode_page
from ceredis.sources.xapi_typed import TypedPage
from doubles.ralph import RalphLRS
from doubles.xapi_fixtures import evidence_to_statements, statement_id
from tests.builders import settings_from
from tests.xapi.conftest import FAST_FAIL, PASSWORD, SMALL_PAGE, credentials

Open = Callable[..., XapiSource]
CASS = "https://cass.ceredis.net/api/data/schema.cassproject.org.0.4.Competency/"


def records(agent: str, count: int, **fields: Any) -> list[dict[str, Any]]:
    """*count* valid evidence records of one learner, timestamps one minute apart."""
    return [
        {
            "evidenceId": f"{agent}-ev-{n:03d}",
            "agentId": agent,
            "competencyId": "5.3",
            "evidenceType": "P2",
            "rawScore": Decimal(f"{50 + n}.5"),
            "timestamp": f"2026-03-01T10:{n:02d}:00+00:00",
            **fields,
        }
        for n in range(count)
    ]


def fields_of(source: XapiSource, agent: str) -> list[dict[str, Any]]:
    return [dict(e.fields) for e in source.fetch(agent)]


# -- mapping through a real LRS ---------------------------------------------------------


def test_cohort_round_trips_through_ralph(ralph: RalphLRS, open_source: Open) -> None:
    """Fixtures → Ralph → source give back identical fields, decimal text included."""
    cohort = [
        {
            "evidenceId": "rt-1",
            "agentId": "rt-alice",
            "competencyId": "5.3",
            "evidenceType": "P2",
            "rawScore": Decimal("72.1"),
            "timestamp": "2026-03-01T09:00:00+00:00",
            "context": "La Bohème (Aznavour)",
            "validator": "prof-dupont",
        },
        {
            "evidenceId": "rt-2",
            "agentId": "rt-alice",
            "competencyId": "32144434-c455-4f52-ae20-aaa759e4448e",
            "evidenceType": "P3",
            "rawScore": Decimal("72.10"),
            "timestamp": "2026-03-01T10:00:00.250000+01:00",
        },
        {
            "evidenceId": "rt-3",
            "agentId": "rt-alice",
            "competencyId": CASS + "ce92449c-c455-4c60-b917-c0e943da9ad4",
            "evidenceType": "P4",
            "rawScore": Decimal("33.333333333333333333"),
            "timestamp": "2026-03-01T11:00:00-05:00",
            "validator": "auto-grader",
        },
        {
            "evidenceId": "rt-4",
            "agentId": "rt-alice",
            "competencyId": CASS + "faf9e14f-c455-498f-aae5-cf41358882bc/1700000000000",
            "evidenceType": "P1",
            "rawScore": 100,
            "timestamp": "2026-03-02T00:00:00Z",
            "context": "song:7",
        },
        {
            "evidenceId": "rt-5",
            "agentId": "rt-alice",
            "competencyId": "1.1",
            "evidenceType": "P1",
            "rawScore": 0,
            "timestamp": "2026-03-03T00:00:00+00:00",
        },
    ]
    ralph.add(evidence_to_statements(reversed(cohort)))  # file order is not our order
    source = open_source(ralph)
    got = source.fetch("rt-alice")
    assert [dict(e.fields) for e in got] == cohort
    assert [str(e.fields["rawScore"]) for e in got] == [
        "72.1",
        "72.10",
        "33.333333333333333333",
        "100",
        "0",
    ]
    assert [e.where for e in got] == [f"statement {statement_id(r)}" for r in cohort]


def test_mbox_learners_round_trip(ralph: RalphLRS, open_source: Open) -> None:
    """A learner named by an mbox is fetched with an mbox filter and keeps that id."""
    learner = "mailto:rt-bob@example.org"
    ralph.add(evidence_to_statements(records(learner, 2)))
    assert fields_of(open_source(ralph), learner) == records(learner, 2)


# -- paging, filtering, order -----------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "pages"),
    [(SMALL_PAGE - 1, 1), (SMALL_PAGE, 2), (2 * SMALL_PAGE, 3), (2 * SMALL_PAGE + 1, 3)],
)
def test_paging_follows_more_links(
    ralph_small_pages: RalphLRS, open_source: Open, count: int, pages: int
) -> None:
    """Every statement arrives across pages, incl. the empty page after an exact multiple."""
    learner = f"pg-{count}"
    ralph_small_pages.add(evidence_to_statements(records(learner, count)))
    source = open_source(ralph_small_pages)
    assert fields_of(source, learner) == records(learner, count)
    assert source.stats()["requests"] == pages


def test_page_size_from_the_uri(ralph: RalphLRS, open_source: Open) -> None:
    """The URI's limit option sets the page size the source asks for."""
    ralph.add(evidence_to_statements(records("pg-uri", 5)))
    source = open_source("xapi+" + ralph.base_url + "?limit=2")
    assert fields_of(source, "pg-uri") == records("pg-uri", 5)
    assert source.stats()["requests"] == 3


def test_fetch_returns_only_that_learner(ralph: RalphLRS, open_source: Open) -> None:
    """The agent filter keeps other learners, and other home pages, out."""
    ralph.add(evidence_to_statements(records("flt-a", 2) + records("flt-b", 3)))
    ralph.add(
        evidence_to_statements(records("flt-a", 1, evidenceId="other"), home_page="https://x.org")
    )
    source = open_source(ralph)
    assert fields_of(source, "flt-a") == records("flt-a", 2)
    assert fields_of(source, "flt-b") == records("flt-b", 3)
    assert source.fetch("flt-nobody") == []


def test_order_is_by_instant_then_statement_id(ralph: RalphLRS, open_source: Open) -> None:
    """Delivery order is the timestamp's instant, then the id, whatever the file order."""
    same = "2026-04-01T12:00:00+00:00"
    batch = [
        *records("ord", 1, evidenceId="late", timestamp="2026-04-01T14:30:00+02:00"),
        *records("ord", 1, evidenceId="tie-1", timestamp=same),
        *records("ord", 1, evidenceId="early", timestamp="2026-04-01T06:00:00-05:00"),
        *records("ord", 1, evidenceId="tie-2", timestamp="2026-04-01T14:00:00+02:00"),
    ]
    ralph.add(evidence_to_statements(batch))
    got = open_source(ralph).fetch("ord")
    ties = sorted(
        ["tie-1", "tie-2"], key=lambda e: statement_id({"agentId": "ord", "evidenceId": e})
    )
    assert [e.fields["evidenceId"] for e in got] == ["early", *ties, "late"]


def test_voided_statements_are_left_out(ralph: RalphLRS, open_source: Open) -> None:
    """A voiding statement and the statement it voids are not evidence."""
    kept, voided = records("void", 2)
    ralph.add(evidence_to_statements([kept, voided]))
    ralph.add(
        [
            {
                "actor": {"account": {"homePage": DEFAULT_HOME_PAGE, "name": "void"}},
                "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
                "object": {"objectType": "StatementRef", "id": statement_id(voided)},
                "timestamp": "2026-03-05T00:00:00+00:00",
            }
        ]
    )
    assert fields_of(open_source(ralph), "void") == [kept]


def test_invalid_statements_become_invalid_records(ralph: RalphLRS, open_source: Open) -> None:
    """No score, no competency or no type: delivered with what could be read, never dropped."""
    good, no_score, no_competency, no_type = records("inv", 4)
    del no_score["rawScore"]
    del no_competency["competencyId"]
    del no_type["evidenceType"]
    statements = evidence_to_statements([good, no_score, no_competency, no_type])
    assert "object" not in statements[2]
    ralph.add(statements)
    got = open_source(ralph).fetch("inv")
    assert [dict(e.fields) for e in got] == [good, no_score, no_competency, no_type]
    assert [e.where for e in got] == [f"statement {s['id']}" for s in statements]


def test_agents_lists_every_learner_sorted(ralph_small_pages: RalphLRS, open_source: Open) -> None:
    """agents() pages through the whole LRS and returns our learners, sorted."""
    ralph_small_pages.add(evidence_to_statements(records("ag-zed", 2) + records("ag-amy", 1)))
    ralph_small_pages.add(evidence_to_statements(records("mailto:ag@example.org", 1)))
    ralph_small_pages.add(
        evidence_to_statements(records("ag-foreign", 1), home_page="https://x.org")
    )
    agents = list(open_source(ralph_small_pages).agents())
    assert agents == sorted(agents)
    assert {"ag-amy", "ag-zed", "mailto:ag@example.org"} <= set(agents)
    assert "ag-foreign" not in agents
    assert len(agents) == len(set(agents))


def test_ping_succeeds_with_good_credentials(ralph: RalphLRS, open_source: Open) -> None:
    """ping() is one authenticated request."""
    source = open_source(ralph)
    source.ping()
    assert source.stats()["requests"] == 1


# -- failures -------------------------------------------------------------------------


def test_bad_credentials_fail_clearly(ralph: RalphLRS, open_source: Open) -> None:
    """A wrong password is a SourceError that says so and names the variables."""
    source = open_source(ralph, env=credentials(password="wrong-" + PASSWORD))
    with pytest.raises(SourceError) as caught:
        source.ping()
    message = str(caught.value)
    assert "refused the credentials (HTTP 401)" in message
    assert "CEREDIS_XAPI_PASSWORD" in message
    with pytest.raises(SourceError, match="refused the credentials"):
        source.fetch("anyone")


def test_missing_credentials_say_what_to_set(ralph: RalphLRS, open_source: Open) -> None:
    """No credentials at all: the error says which variables to set."""
    with pytest.raises(SourceError, match="set CEREDIS_XAPI_USERNAME and CEREDIS_XAPI_PASSWORD"):
        open_source(ralph, env=dict(FAST_FAIL)).ping()


def test_unreachable_server_fails_fast_and_clearly(open_source: Open) -> None:
    """Nothing listening: a SourceError naming the source and the connection failure."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    source = open_source(f"xapi+http://127.0.0.1:{port}/xAPI/")
    start = time.monotonic()
    with pytest.raises(SourceError) as caught:
        source.fetch("anyone")
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert f"xapi+http://127.0.0.1:{port}/xAPI/" in message
    assert "connect" in message.lower()


def test_wrong_endpoint_is_reported(ralph: RalphLRS, open_source: Open) -> None:
    """A URI that is not the xAPI endpoint gives the server's 404, not a crash."""
    with pytest.raises(SourceError, match="HTTP 404"):
        open_source("xapi+" + ralph.origin + "/not-xapi/").ping()


# -- in a worker pool -------------------------------------------------------------------

_worker_source: XapiSource | None = None


def _open_in_worker(uri: str, limiter: RateLimiter) -> None:
    global _worker_source
    _worker_source = XapiSource.from_uri(
        uri, limiter=limiter, settings=settings_from(credentials())
    )


def _fetch_in_worker(agent: str) -> list[dict[str, Any]]:
    assert _worker_source is not None
    return [dict(e.fields) for e in _worker_source.fetch(agent)]


def test_workers_open_their_own_client_and_share_the_rate_limit(ralph: RalphLRS) -> None:
    """In a fork pool, each worker opens the source in its initializer; results match."""
    learners = [f"pool-{n}" for n in range(6)]
    for agent in learners:
        ralph.add(evidence_to_statements(records(agent, 2)))
    limiter = RateLimiter(50.0, burst=2)
    context = multiprocessing.get_context("fork")
    with context.Pool(2, _open_in_worker, ("xapi+" + ralph.base_url, limiter)) as pool:
        got = pool.map(_fetch_in_worker, learners)
    assert got == [records(agent, 2) for agent in learners]


def test_ralph_pages_take_the_typed_fast_lane(ralph: RalphLRS, open_source: Open) -> None:
    """What Ralph sends back for our statements (``stored``, ``authority`` added) is of
    the common shape: the fast lane serves the real LRS, not only the benchmark's."""
    record = {
        "evidenceId": "typed-1",
        "agentId": "typed-alice",
        "competencyId": "5.3",
        "evidenceType": "P2",
        "rawScore": Decimal("72.10"),
        "timestamp": "2026-03-01T09:00:00+00:00",
        "validator": "prof-dupont",
    }
    ralph.add(evidence_to_statements([record]))
    source = open_source(ralph)
    fields = {"agent": json.dumps(source._agent_filter("typed-alice")), "limit": "10"}
    page = source._page("statements", fields, _decode_page)
    assert type(page) is TypedPage
    assert [dict(e.fields) for e in source.fetch("typed-alice")] == [record]
