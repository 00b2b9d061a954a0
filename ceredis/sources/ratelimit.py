"""One request-rate limit shared by every worker process: GCRA on shared memory.

The parent process creates a :class:`RateLimiter` before it starts the pool and hands
it to the workers through the pool initializer arguments (this works with the
``fork`` and the ``spawn`` start methods: the shared array and the lock travel with
the process at creation time). Every HTTP request of every worker then takes a slot
from the same limiter, so N workers together never exceed the configured rate, and
a 429 seen by one worker pauses all of them (:meth:`RateLimiter.pause`).

GCRA ("generic cell rate algorithm") keeps one number, the theoretical arrival time
(TAT): with an emission interval ``T = 1/rate`` and a tolerance ``tau = (burst-1)·T``
a request may start at ``max(now, TAT - tau)`` and moves TAT to ``max(TAT, now) + T``.
Any window of length W then holds at most ``rate·W + burst`` request starts.

Times come from ``time.monotonic()``, which is one system-wide clock on Linux, macOS
and Windows, so TATs written by one process are meaningful in another. Tests inject a
fake clock and call the pure-ish :meth:`RateLimiter.reserve` with an explicit ``now``.

Environment: ``CEREDIS_SOURCE_RATE`` (requests per second, all workers together,
default 20) and ``CEREDIS_SOURCE_BURST`` (requests allowed back to back, default 5).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from ceredis.errors import ConfigError

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_RATE",
    "ENV_BURST",
    "ENV_RATE",
    "RateLimiter",
    "SharedRateLimiter",
]

ENV_RATE = "CEREDIS_SOURCE_RATE"
ENV_BURST = "CEREDIS_SOURCE_BURST"
DEFAULT_RATE = 20.0
DEFAULT_BURST = 5

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
        context: Any = None,
        ctx: Any = None,
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
        # ``ctx`` is an alias of ``context`` (the multiprocessing context of the pool).
        ctx = context if context is not None else ctx
        ctx = ctx if ctx is not None else multiprocessing.get_context()
        self.rate = float(rate)
        self.burst = burst
        self._state = ctx.RawArray("d", 2)  # [TAT, pause-until], both monotonic seconds
        self._lock = ctx.Lock()
        self._clock = clock
        self._sleep = sleep

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        context: Any = None,
    ) -> RateLimiter:
        """Build a limiter from ``CEREDIS_SOURCE_RATE`` / ``CEREDIS_SOURCE_BURST``."""
        env = os.environ if env is None else env
        rate_text = env.get(ENV_RATE, "").strip()
        burst_text = env.get(ENV_BURST, "").strip()
        try:
            rate = float(rate_text.removesuffix("/s")) if rate_text else DEFAULT_RATE
        except ValueError:
            raise ConfigError(
                f"{ENV_RATE}={rate_text!r} is not a number of requests per second; "
                f"set it to e.g. 20"
            ) from None
        try:
            burst = int(burst_text) if burst_text else DEFAULT_BURST
        except ValueError:
            raise ConfigError(
                f"{ENV_BURST}={burst_text!r} is not an integer; set it to e.g. 5"
            ) from None
        try:
            return cls(rate, burst=burst, context=context)
        except ConfigError as exc:
            raise ConfigError(f"{ENV_RATE}/{ENV_BURST}: {exc}") from None

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
        return f"RateLimiter(rate={self.rate:g}/s, burst={self.burst})"

    def __getstate__(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "burst": self.burst,
            "_state": self._state,
            "_lock": self._lock,
            "_clock": self._clock,
            "_sleep": self._sleep,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


#: The name the engine uses: the limiter is shared by every worker process.
SharedRateLimiter = RateLimiter
