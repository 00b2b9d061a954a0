"""The shared HTTP layer: the pure retry policy, then the client against the CaSS double."""

from __future__ import annotations

import pickle
import time
from decimal import Decimal

import pytest

from ceredis.config import HttpSettings
from ceredis.errors import ConfigError, SourceError
from ceredis.sources.http import (
    Failure,
    HttpClient,
    RetryPolicy,
    Timeouts,
    parse_retry_after,
    snippet,
)
from ceredis.sources.retry import Verdict
from doubles.cass_double import CassDouble, Fault
from tests.builders import settings_from

# -- the policy, without I/O -----------------------------------------------------------


def test_backoff_is_exponential_capped_and_jittered():
    policy = RetryPolicy(backoff_base=0.5, backoff_max=3.0, jitter=0.5)
    assert [policy.backoff(k, 0.0) for k in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.backoff(2, 0.999) == pytest.approx(0.5, abs=0.01)  # jitter: down to half
    assert RetryPolicy(jitter=0).backoff(1, 0.9) == 0.25


def test_retryable_failures_are_retried_until_the_budget_is_spent():
    policy = RetryPolicy(retries=2)
    for failure in (
        Failure("connection", "reset"),
        Failure("timeout", "read timeout"),
        Failure("truncated", "cut"),
        Failure("bad_body", "html"),
        Failure("status", "busy", status=503),
        Failure("status", "", status=500),
    ):
        assert policy.decide(failure, attempt=1, now=0, deadline=100, rand=0).retry
        assert policy.decide(failure, attempt=2, now=0, deadline=100, rand=0).retry
        last = policy.decide(failure, attempt=3, now=0, deadline=100, rand=0)
        assert not last.retry and "gave up after 3 attempts" in last.reason


def test_client_errors_are_not_retried():
    for status in (400, 401, 404, 419, 451):
        decision = RetryPolicy().decide(
            Failure("status", "x", status=status), attempt=1, now=0, deadline=100, rand=0
        )
        assert not decision.retry


def test_retry_after_replaces_a_shorter_backoff_and_pauses_everyone_on_429():
    decision = RetryPolicy().decide(
        Failure("status", "", status=429, retry_after=7), attempt=1, now=0, deadline=100, rand=0
    )
    assert decision.retry and decision.delay == 7 and decision.pause_all == 7


def test_retry_after_beyond_the_cap_fails_at_once_and_pauses_only_for_the_cap():
    decision = RetryPolicy(retry_after_cap=60).decide(
        Failure("status", "", status=429, retry_after=900), attempt=1, now=0, deadline=1e6, rand=0
    )
    assert not decision.retry
    assert decision.pause_all == 60
    assert "900 s (Retry-After), more than the 60 s cap" in decision.reason


def test_no_retry_when_the_wait_would_pass_the_deadline():
    decision = RetryPolicy().decide(
        Failure("status", "", status=503, retry_after=5), attempt=1, now=98, deadline=100, rand=0
    )
    assert not decision.retry and "deadline" in decision.reason


def test_each_decision_says_its_kind():
    """Callers branch on the verdict, never on the reason's wording."""
    policy = RetryPolicy(retries=1, retry_after_cap=60)

    def verdict(failure: Failure, attempt: int = 1, now: float = 0) -> Verdict:
        return policy.decide(failure, attempt=attempt, now=now, deadline=100, rand=0).kind

    assert verdict(Failure("status", "", status=503)) is Verdict.RETRY
    assert verdict(Failure("status", "", status=404)) is Verdict.NOT_RETRYABLE
    assert verdict(Failure("status", "", status=429, retry_after=900)) is Verdict.WAIT_TOO_LONG
    assert verdict(Failure("timeout", "t"), attempt=2) is Verdict.EXHAUSTED
    assert verdict(Failure("status", "", status=503, retry_after=5), now=98) is Verdict.OUT_OF_TIME


def test_retry_after_parsing():
    assert parse_retry_after("120", 0) == 120
    assert parse_retry_after(" 1.5 ", 0) == 1.5
    assert parse_retry_after("-3", 0) == 0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after(None, 0) is None


def test_snippet_is_one_short_printable_line():
    assert snippet(b"a\n  b\x00c") == "a b?c"
    assert len(snippet("word " * 1000)) == 300
    assert snippet("sig: " + "QUJD" * 50) == "sig: […]"


def test_settings_from_the_environment_and_their_errors():
    http = settings_from(
        {
            "CEREDIS_SOURCE_RETRIES": "2",
            "CEREDIS_SOURCE_RETRY_AFTER_CAP": "5",
            "CEREDIS_SOURCE_READ_TIMEOUT": "9",
        }
    ).http
    policy, timeouts = RetryPolicy.from_settings(http), Timeouts.from_settings(http)
    assert policy.retries == 2 and policy.retry_after_cap == 5 and timeouts.read == 9
    assert settings_from({}).http == HttpSettings()
    assert RetryPolicy.from_settings(HttpSettings()) == RetryPolicy()
    assert Timeouts.from_settings(HttpSettings()) == Timeouts()
    with pytest.raises(ConfigError, match="CEREDIS_SOURCE_READ_TIMEOUT"):
        settings_from({"CEREDIS_SOURCE_READ_TIMEOUT": "fast"})
    with pytest.raises(ConfigError, match="CEREDIS_SOURCE_RETRIES"):
        settings_from({"CEREDIS_SOURCE_RETRIES": "many"})
    with pytest.raises(ConfigError):
        Timeouts(connect=0)


# -- the client against the double -----------------------------------------------------


@pytest.fixture
def cass():
    with CassDouble() as double:
        yield double


def client(double: CassDouble, **kw) -> HttpClient:
    kw.setdefault("policy", RetryPolicy(backoff_base=0.01, backoff_max=0.05))
    kw.setdefault("timeouts", Timeouts(connect=2, read=2, deadline=10))
    return HttpClient(double.base_url, name="cass-test", **kw)


def test_retry_after_one_second_twice_then_success(cass):
    cass.add_fault(Fault.cass_429(retry_after=1, route="ping", times=2))
    with client(cass) as http:
        start = time.monotonic()
        assert http.get_json("ping")["ping"] == "pong"
        elapsed = time.monotonic() - start
        assert http.stats()["retries"] == 2 and http.stats()["throttled"] == 2
    pings = cass.requests("ping")
    assert [e.status for e in pings] == [429, 429, 200]
    assert 2.0 <= elapsed < 4.0
    assert pings[1].t - pings[0].t >= 0.99 and pings[2].t - pings[1].t >= 0.99


def test_retry_after_900_fails_fast_with_a_clear_error(cass):
    cass.add_fault(Fault.cass_429(retry_after=900, route="ping"))
    with client(cass, policy=RetryPolicy(retry_after_cap=60)) as http:
        start = time.monotonic()
        with pytest.raises(SourceError) as err:
            http.get("ping")
        assert time.monotonic() - start < 2
    message = str(err.value)
    assert "900 s (Retry-After), more than the 60 s cap" in message
    assert "cass-test: GET /api/ping" in message
    assert "Too many requests" in message  # the server's own words


def test_5xx_bursts_are_retried(cass):
    cass.add_fault(Fault.proxy(503, route="ping", times=2), Fault.proxy(504, route="ping", times=1))
    with client(cass) as http:
        assert http.get_json("ping")["ping"] == "pong"
    assert [e.status for e in cass.requests("ping")] == [503, 503, 504, 200]


def test_a_persistent_500_fails_with_the_plain_text_body(cass):
    cass.add_fault(Fault.cass_500_search(route="ping"))
    with client(cass, policy=RetryPolicy(retries=2, backoff_base=0.01)) as http:
        with pytest.raises(SourceError) as err:
            http.get("ping")
        assert http.stats()["errors"] == 1 and http.stats()["requests"] == 3
    assert "gave up after 3 attempts" in str(err.value)
    assert "HTTP 500: An unknown error has occurred. If using the 'start' parameter" in str(
        err.value
    )


def test_a_400_is_not_retried_and_its_text_is_surfaced(cass):
    with client(cass) as http, pytest.raises(SourceError) as err:
        http.post_form("data", {"searchParams": '{"q":"a~2"}', "signatureSheet": "[]"})
    assert len(cass.requests("search")) == 1
    assert "HTTP 400: [query_shard_exception] Failed to parse query [a~2]" in str(err.value)


def test_long_error_bodies_are_truncated(cass):
    cass.add_fault(Fault.http_status(404, "no such thing " * 500, route="ping"))
    with client(cass) as http, pytest.raises(SourceError) as err:
        http.get("ping")
    assert 300 < len(str(err.value)) < 420


def test_a_hang_beyond_the_read_timeout_is_retried(cass):
    cass.add_fault(Fault.hang(delay_s=30, route="ping", times=1))
    with client(cass, timeouts=Timeouts(connect=1, read=0.5, deadline=10)) as http:
        start = time.monotonic()
        assert http.get_json("ping")["ping"] == "pong"
        assert time.monotonic() - start < 3
        assert http.stats()["retries"] == 1


def test_a_hang_past_every_retry_fails_within_the_deadline(cass):
    cass.add_fault(Fault.hang(delay_s=30, route="ping"))
    with client(cass, timeouts=Timeouts(connect=1, read=0.4, deadline=1.5)) as http:
        start = time.monotonic()
        with pytest.raises(SourceError, match="read timeout"):
            http.get("ping")
        assert time.monotonic() - start < 2.5


def test_a_slow_body_is_cut_at_the_deadline(cass):
    cass.add_fault(Fault.slow_body(bytes_per_s=40, route="ping"))
    with client(
        cass, timeouts=Timeouts(connect=1, read=1, deadline=1.0), policy=RetryPolicy(retries=0)
    ) as http:
        start = time.monotonic()
        with pytest.raises(SourceError, match="deadline"):
            http.get("ping")
        assert time.monotonic() - start < 2.5


def test_reset_before_and_during_the_body_are_retried(cass):
    cass.add_fault(
        Fault.reset(route="ping", times=1), Fault.reset(after_bytes=8, route="ping", times=1)
    )
    with client(cass) as http:
        assert http.get_json("ping")["ping"] == "pong"
        assert http.stats()["retries"] == 2
    assert [e.faults for e in cass.requests("ping")] == [["reset"], ["reset"], []]


def test_a_truncated_body_is_retried_then_reported(cass):
    cass.add_fault(Fault.truncate(after_bytes=10, route="ping"))
    policy = RetryPolicy(retries=1, backoff_base=0.01)
    with client(cass, policy=policy) as http, pytest.raises(SourceError, match="cut short"):
        http.get("ping")
    assert len(cass.requests("ping")) == 2


def test_bad_json_is_retried_then_reported_with_a_snippet(cass):
    cass.add_fault(Fault.bad_json(route="ping", times=1))
    with client(cass) as http:
        assert http.get_json("ping")["ping"] == "pong"
    cass.add_fault(Fault.bad_json(route="ping"))
    once = RetryPolicy(retries=0)
    with client(cass, policy=once) as http, pytest.raises(SourceError, match=r"not valid JSON"):
        http.get_json("ping")


def test_connection_refused_is_a_clear_error():
    double = CassDouble()
    url = double.base_url
    double.stop()
    http = HttpClient(
        url,
        policy=RetryPolicy(retries=1, backoff_base=0.01),
        timeouts=Timeouts(connect=1, read=1, deadline=3),
        name="down",
    )
    with pytest.raises(SourceError, match=r"gave up after 2 attempts; last error: cannot connect"):
        http.get("ping")
    http.close()


def test_json_numbers_stay_exact(cass):
    with client(cass) as http:
        http.get_json("ping")
        assert http.get_json("ping")["postMaxSize"] == 52428800
    from ceredis.sources.http import parse_json

    assert parse_json(b'{"a": 72.10, "b": NaN}')["a"] == Decimal("72.10")


def test_paths_resolve_against_the_base_and_stay_on_its_origin(cass):
    with client(cass) as http:
        assert http.get_json(f"{cass.prefix}/api/ping")["ping"] == "pong"
        with pytest.raises(SourceError, match="not the configured server"):
            http.get("http://example.invalid/steal")
    with pytest.raises(ConfigError, match="user:password"):
        HttpClient("https://u:p@h/api/")
    with pytest.raises(ConfigError):
        HttpClient("ftp://h/")


def test_the_pool_is_made_lazily_and_a_pickled_client_carries_none(cass):
    http = client(cass)
    assert http._pool is None
    http.get("ping")
    assert http._pool is not None
    clone = pickle.loads(pickle.dumps(http))
    assert clone._pool is None and clone.get_json("ping")["ping"] == "pong"
    clone.close()
    http.close()
