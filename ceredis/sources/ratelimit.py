"""The limits on upstream requests shared by every worker process: a request rate (GCRA
on shared memory) and a bound on requests in flight (a semaphore).

The parent process creates a :class:`RateLimiter` before it starts the pool and hands
it to the workers through the pool initializer arguments (this works with the
``fork`` and the ``spawn`` start methods: the shared array, the lock and the semaphore
travel with the process at creation time). Every HTTP request of every worker, from
every fetch thread, then holds one in-flight slot (:meth:`RateLimiter.in_flight_slot`)
and takes a rate slot from the same limiter, so N workers together never exceed the
configured rate nor the configured requests in flight, and a 429 seen by one worker
pauses all of them (:meth:`RateLimiter.pause`). A worker killed while holding an
in-flight slot never gives it back: the parent calls :meth:`RateLimiter.renew_gate`
before it starts a new pool.

GCRA ("generic cell rate algorithm") keeps one number, the theoretical arrival time
(TAT): with an emission interval ``T = 1/rate`` and a tolerance ``tau = (burst-1)·T``
a request may start at ``max(now, TAT - tau)`` and moves TAT to ``max(TAT, now) + T``.
Any window of length W then holds at most ``rate·W + burst`` request starts.

Times come from ``time.monotonic()``, which is one system-wide clock on Linux, macOS
and Windows, so TATs written by one process are meaningful in another. Tests inject a
fake clock and call the pure-ish :meth:`RateLimiter.reserve` with an explicit ``now``.

Settings: ``CEREDIS_SOURCE_RATE`` (requests per second, all workers together,
default 20), ``CEREDIS_SOURCE_BURST`` (requests allowed back to back, default 5),
resolved by :mod:`ceredis.config` into a :class:`~ceredis.config.RateSettings`, and
``CEREDIS_IN_FLIGHT`` (requests in flight, all workers together, default 16).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ceredis.config import RateSettings
from ceredis.errors import ConfigError

if TYPE_CHECKING:
    from ceredis.sources import SourceSpec

__all__ = ["DEFAULT_BURST", "DEFAULT_RATE", "RateLimiter", "limiter_for"]

DEFAULT_RATE = RateSettings.rate
DEFAULT_BURST = RateSettings.burst

_TAT = 0  # index of the theoretical arrival time in the shared array
_PAUSE = 1  # index of the end of the current global pause


class RateLimiter:
    """A GCRA limiter whose state lives in shared memory, usable from many processes.

    >>> limiter = RateLimiter(20.0, burst=5)       # in the parent, before the pool
    >>> # Pool(n, initializer=init_worker, initargs=(limiter,))
    >>> # in a worker: limiter.acquire() before each request
    """

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        *,
        burst: int = DEFAULT_BURST,
        in_flight: int | None = None,
        context: Any = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise ConfigError(f"rate limit: the rate must be a number, got {rate!r}")
        if not math.isfinite(rate) or rate <= 0:
            raise ConfigError(
                f"rate limit: the rate must be a positive number of requests per second, "
                f"got {rate!r}"
            )
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigError(f"rate limit: the burst must be an integer >= 1, got {burst!r}")
        if in_flight is not None and (isinstance(in_flight, bool) or in_flight < 1):
            raise ConfigError(f"in-flight bound: must be an integer >= 1, got {in_flight!r}")
        ctx = context if context is not None else multiprocessing.get_context()
        self.rate = float(rate)
        self.burst = burst
        self.in_flight = in_flight  # None: requests in flight are not bounded here
        self._context = ctx
        self._state = ctx.RawArray("d", 2)  # [TAT, pause-until], both monotonic seconds
        self._lock = ctx.Lock()
        self._gate: Any = None
        self.renew_gate()
        self._clock = clock
        self._sleep = sleep

    @classmethod
    def from_settings(
        cls, settings: RateSettings, *, in_flight: int | None = None, context: Any = None
    ) -> RateLimiter:
        """The limiter the configured rate and burst give (and the in-flight bound)."""
        return cls(settings.rate, burst=settings.burst, in_flight=in_flight, context=context)

    # -- requests in flight ------------------------------------------------------------

    def renew_gate(self) -> None:
        """A fresh in-flight semaphore: call it in the parent before starting a new pool,
        since a killed worker takes the slots it held with it."""
        if self.in_flight is not None:
            self._gate = self._context.BoundedSemaphore(self.in_flight)

    @contextlib.contextmanager
    def in_flight_slot(self, max_wait: float | None = None) -> Iterator[bool]:
        """Hold one of the batch's in-flight slots for the block; yields False (holding
        nothing) when none frees within *max_wait* seconds."""
        gate = self._gate
        if gate is None:
            yield True
            return
        if not gate.acquire(timeout=max_wait):
            yield False
            return
        try:
            yield True
        finally:
            gate.release()

    # -- state shared across processes -------------------------------------------------

    @property
    def interval(self) -> float:
        """Seconds between two request starts at the sustained rate (``T``)."""
        return 1.0 / self.rate

    @property
    def tolerance(self) -> float:
        """How far ahead of the schedule a request may start (``tau``)."""
        return (self.burst - 1) / self.rate

    def reserve(self, now: float, max_wait: float | None = None) -> float | None:
        """Take the next slot; return how long to wait before starting (>= 0).

        Returns ``None`` and takes nothing when the slot is more than *max_wait*
        seconds away. Pure apart from the shared state: *now* is an argument.
        """
        with self._lock:
            return self._reserve_locked(now, max_wait)

    def _reserve_locked(self, now: float, max_wait: float | None) -> float | None:
        state = self._state
        tat = max(state[_TAT], now)
        # pause() pushes TAT to pause-end + tau, so a slot never starts inside a pause.
        wait = max(0.0, tat - self.tolerance - now)
        if max_wait is not None and wait > max_wait:
            return None
        state[_TAT] = tat + self.interval
        return wait

    def pause(self, seconds: float, now: float | None = None) -> None:
        """Stop every worker from starting a request for *seconds* (a 429 was seen)."""
        if not seconds > 0:
            return
        now = self._now() if now is None else now
        until = now + seconds
        with self._lock:
            if until > self._state[_PAUSE]:
                self._state[_PAUSE] = until
            # Resume at the sustained rate, not with a burst.
            self._state[_TAT] = max(self._state[_TAT], until + self.tolerance)

    def paused_until(self) -> float:
        """The monotonic time the current global pause ends (in the past if none)."""
        with self._lock:
            return self._state[_PAUSE]

    def acquire(self, max_wait: float | None = None) -> float | None:
        """Wait for a slot and take it; return the seconds waited.

        Returns ``None`` (having waited nothing and taken nothing) when the next slot
        is more than *max_wait* seconds away. A pause started by another worker while
        this one was waiting is honoured: the slot is given up and a new one taken.
        """
        waited = 0.0
        while True:
            now = self._now()
            wait = self.reserve(now, None if max_wait is None else max_wait - waited)
            if wait is None:
                return None
            if wait > 0:
                self._do_sleep(wait)
                waited += wait
            if self._now() >= self.paused_until():
                return waited

    # -- plumbing ----------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock() if self._clock is not None else time.monotonic()

    def _do_sleep(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            time.sleep(seconds)

    def __repr__(self) -> str:
        bound = "" if self.in_flight is None else f", in_flight={self.in_flight}"
        return f"RateLimiter(rate={self.rate:g}/s, burst={self.burst}{bound})"


def limiter_for(spec: SourceSpec) -> RateLimiter | None:
    """The request-rate and in-flight limits (``spec.settings``) shared by every (forked)
    worker of a remote-source batch; None for a file source."""
    if spec.kind == "file":
        return None
    return RateLimiter.from_settings(
        spec.settings.rate,
        in_flight=spec.settings.in_flight,
        context=multiprocessing.get_context("fork"),
    )
