"""The shared GCRA limiter: pure checks with a fake clock, then real worker processes."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from ceredis.errors import ConfigError
from ceredis.sources.http import HttpClient, RetryPolicy, Timeouts
from ceredis.sources.ratelimit import RateLimiter
from doubles.cass_double import CassDouble, Fault
from tests.builders import settings_from

#: Allowance for the spread of network delays between a request's start (what the
#: limiter paces) and its arrival (what the double's journal stamps).
ARRIVAL_JITTER_S = 0.05


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_burst_then_the_sustained_rate():
    limiter = RateLimiter(10, burst=3)
    waits = [limiter.reserve(0.0) for _ in range(6)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])


def test_idle_time_refills_the_burst_but_no_more():
    limiter = RateLimiter(10, burst=2)
    assert limiter.reserve(0.0) == 0 and limiter.reserve(0.0) == 0
    assert limiter.reserve(100.0) == 0 and limiter.reserve(100.0) == 0
    assert limiter.reserve(100.0) == pytest.approx(0.1)


def test_a_slot_beyond_max_wait_is_not_taken():
    limiter = RateLimiter(1, burst=1)
    assert limiter.reserve(0.0) == 0
    assert limiter.reserve(0.0, max_wait=0.5) is None
    assert limiter.reserve(0.0, max_wait=1.0) == pytest.approx(1.0)


def test_a_pause_holds_every_slot_and_resumes_without_a_burst():
    limiter = RateLimiter(10, burst=5)
    limiter.pause(2.0, now=0.0)
    assert limiter.reserve(0.5) == pytest.approx(1.5)
    assert limiter.reserve(0.5) == pytest.approx(1.6)
    limiter.pause(0.5, now=0.0)  # a shorter pause never shortens the current one
    assert limiter.paused_until() == 2.0


def test_acquire_sleeps_with_the_injected_clock():
    clock = FakeClock()
    limiter = RateLimiter(4, burst=1, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire() for _ in range(3)] == pytest.approx([0, 0.25, 0.25])
    assert clock.now == pytest.approx(0.5)
    assert limiter.acquire(max_wait=0.1) is None and clock.now == pytest.approx(0.5)


def test_acquire_honours_a_pause_started_while_it_waited():
    clock = FakeClock()
    limiter = RateLimiter(10, burst=1, clock=clock, sleep=clock.sleep)
    limiter.acquire()

    def sleep_while_another_worker_sees_429(seconds: float) -> None:
        if not clock.slept:
            limiter.pause(3.0, now=clock.now)
        clock.sleep(seconds)

    limiter._sleep = sleep_while_another_worker_sees_429
    limiter.acquire()
    assert clock.now >= 3.0


def test_configuration_from_the_environment():
    settings = settings_from({"CEREDIS_SOURCE_RATE": "50/s", "CEREDIS_SOURCE_BURST": "2"})
    limiter = RateLimiter.from_settings(settings.rate)
    assert (limiter.rate, limiter.burst) == (50.0, 2)
    assert RateLimiter.from_settings(settings_from({}).rate).rate == 20.0
    with pytest.raises(ConfigError, match="CEREDIS_SOURCE_RATE"):
        settings_from({"CEREDIS_SOURCE_RATE": "fast"})
    with pytest.raises(ConfigError, match="positive"):
        settings_from({"CEREDIS_SOURCE_RATE": "0"})
    with pytest.raises(ConfigError, match="CEREDIS_SOURCE_BURST"):
        settings_from({"CEREDIS_SOURCE_BURST": "1.5"})
    assert RateLimiter(5, context=multiprocessing.get_context("spawn")).rate == 5


# -- real processes --------------------------------------------------------------------

_worker: dict[str, Any] = {}


def _init_limiter(limiter: RateLimiter) -> None:
    _worker["limiter"] = limiter


def _take_slots(n: int) -> list[float]:
    limiter: RateLimiter = _worker["limiter"]
    out = []
    for _ in range(n):
        limiter.acquire()
        out.append(time.monotonic())
    return out


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def _assert_rate(times: list[float], rate: float, burst: int, jitter: float = 0.0) -> None:
    for window in (0.05, 0.1, 0.25, 0.5, 1.0):
        allowed = rate * (window + jitter) + burst
        assert _max_in_window(times, window) <= allowed, (window, allowed)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_limit_holds_across_processes(method: str):
    ctx = multiprocessing.get_context(method)
    rate, burst = 50.0, 3
    limiter = RateLimiter(rate, burst=burst, context=ctx)
    with ctx.Pool(4, initializer=_init_limiter, initargs=(limiter,)) as pool:
        pool.map(_take_slots, [1] * 4)  # every worker is up before timing starts
        runs = pool.map(_take_slots, [15] * 4)
    times = [t for run in runs for t in run]
    assert len(times) == 60
    _assert_rate(times, rate, burst)
    span = max(times) - min(times)
    assert span >= (60 - burst) / rate * 0.95  # paced, not bunched


def _init_http(base_url: str, limiter: RateLimiter) -> None:
    _worker["http"] = HttpClient(
        base_url,
        limiter=limiter,
        timeouts=Timeouts(connect=2, read=5, deadline=20),
        policy=RetryPolicy(backoff_base=0.01),
        name="hammer",
    )


def _hammer(until: float) -> int:
    http: HttpClient = _worker["http"]
    n = 0
    while time.monotonic() < until:
        http.get("ping")
        n += 1
    return n


def test_four_workers_hammering_the_double_stay_under_the_rate():
    rate, burst = 40.0, 4
    ctx = multiprocessing.get_context("fork")
    limiter = RateLimiter(rate, burst=burst, context=ctx)
    with (
        CassDouble() as cass,
        ctx.Pool(4, initializer=_init_http, initargs=(cass.base_url, limiter)) as pool,
    ):
        until = time.monotonic() + 2.0
        counts = pool.map(_hammer, [until] * 4)
        times = [e.t for e in cass.requests("ping")]
    assert sum(counts) == len(times)
    assert all(c > 5 for c in counts)  # the limit is shared, not grabbed by one worker
    _assert_rate(times, rate, burst, jitter=ARRIVAL_JITTER_S)
    assert len(times) >= 0.75 * rate * 2.0  # and the capacity is used


def test_a_429_pauses_every_worker():
    rate, burst = 40.0, 2
    ctx = multiprocessing.get_context("fork")
    limiter = RateLimiter(rate, burst=burst, context=ctx)
    with (
        CassDouble() as cass,
        ctx.Pool(4, initializer=_init_http, initargs=(cass.base_url, limiter)) as pool,
    ):
        cass.add_fault(Fault.cass_429(retry_after=1, route="ping", nth=20))
        until = time.monotonic() + 2.5
        pool.map(_hammer, [until] * 4)
        journal = cass.requests("ping")
    t429 = next(e.t for e in journal if e.status == 429)
    during = [e.t for e in journal if t429 + 0.2 < e.t < t429 + 0.95]
    after = [e.t for e in journal if e.t >= t429 + 0.95]
    assert during == []
    assert len(after) > 20  # everyone resumed
