"""One request-rate limit for a whole Dask cluster: a slot calendar held by the scheduler.

The shared-memory :class:`~ceredis.sources.ratelimit.RateLimiter` cannot span machines.
Here the state lives in one place every worker reaches, the scheduler (a handler added
for the run's duration), and each worker reserves a block of slots per round trip so
that the round trip never throttles the rate.

The calendar divides time into cells of ``T = 1/rate`` seconds and gives each cell to
at most one request; a worker asks for *k* slots spaced by its own request cadence, so
blocks of different workers interleave. Any window of ``W`` seconds then holds at most
``rate·W + 1`` reserved slots. A worker uses a slot at its time or up to
``g = max(1, burst - 1)/rate`` late (else it gives it up): the burst allowance is spent
as lateness, and request starts stay within ``rate·W + max(2, burst)``. Slot times
travel as delays from the scheduler's "now" and are counted from the reply's arrival,
so no two clocks need to agree.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["ClusterLimiter", "SlotCalendar", "install_desk", "remove_desk", "scheduler_caller"]

BLOCK_SECONDS = 0.1  # a worker reserves about this much of its own request time at once
MAX_BLOCK = 64
_OPS = ("ceredis_slots_", "ceredis_pause_")


class SlotCalendar:
    """Request slots on a grid of cells ``1/rate`` wide, one request per cell."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate
        self._clock = clock
        self._taken: set[int] = set()
        self._paused_until = 0.0

    def reserve(self, count: int, spacing: float = 0.0, max_wait: float | None = None) -> list:
        """Up to *count* slots, about *spacing* seconds apart, as delays from now; none
        when the first is more than *max_wait* seconds away."""
        now = self._clock()
        self._forget(now)
        step = max(spacing, self.interval)
        first = max(now, self._paused_until)
        delays: list[float] = []
        for j in range(max(1, min(count, MAX_BLOCK))):
            cell = math.ceil((first + j * step) / self.interval)
            while cell in self._taken:
                cell += 1
            delay = cell * self.interval - now
            if j == 0 and max_wait is not None and delay > max_wait:
                break
            self._taken.add(cell)
            delays.append(delay)
        return delays

    def pause(self, seconds: float) -> None:
        """No slot starts in the next *seconds* (a 429 was seen by some worker)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _forget(self, now: float) -> None:
        if len(self._taken) > 4 * MAX_BLOCK:
            past = math.floor(now / self.interval)
            self._taken = {cell for cell in self._taken if cell >= past}


def install_desk(dask_scheduler: Any, run_id: str, rate: float) -> None:
    """On the scheduler: answer the run's slot and pause requests from one calendar."""
    calendar = SlotCalendar(rate)
    slots, pause = (f"{op}{run_id}" for op in _OPS)
    dask_scheduler.handlers[slots] = calendar.reserve
    dask_scheduler.handlers[pause] = calendar.pause


def remove_desk(dask_scheduler: Any, run_id: str) -> None:
    """On the scheduler: forget the run's calendar."""
    for op in _OPS:
        dask_scheduler.handlers.pop(f"{op}{run_id}", None)


class ClusterLimiter:
    """In a Dask worker: the batch's limiter (``acquire``/``pause``), backed by the
    scheduler's calendar, a block of slots per round trip."""

    def __init__(
        self, run_id: str, rate: float, burst: int, call: Callable[..., Any], in_flight: int = 0
    ) -> None:
        self.rate = rate
        self.in_flight = in_flight or None  # this worker's share of the batch's bound
        self._gate = threading.BoundedSemaphore(in_flight) if in_flight else None
        self.interval = 1.0 / rate
        self.grace = max(1, burst - 1) / rate  # how late a slot may still be used
        self._ops = tuple(f"{op}{run_id}" for op in _OPS)
        self._call = call  # call(op, **kwargs): the scheduler's answer
        self._slots: deque[float] = deque()
        self._lock = threading.Lock()
        self._cadence = 0.0  # seconds between this worker's requests (moving average)
        self._last = 0.0

    def acquire(self, max_wait: float | None = None) -> float | None:
        """Wait for a slot and take it; the seconds waited, or None if none comes in time."""
        with self._lock:
            now = time.monotonic()
            self._learn_cadence(now)
            while self._slots and self._slots[0] < now - self.grace:
                self._slots.popleft()  # too late to use without exceeding the rate
            if not self._slots:
                self._refill(max_wait)
            if not self._slots:
                return None
            start = self._slots.popleft()
        wait = max(0.0, start - time.monotonic())
        if wait:
            time.sleep(wait)
        return wait

    @contextlib.contextmanager
    def in_flight_slot(self, max_wait: float | None = None) -> Iterator[bool]:
        """Hold one of this worker's in-flight slots for the block; False (holding
        nothing) when none frees within *max_wait* seconds."""
        if self._gate is None:
            yield True
            return
        if not self._gate.acquire(timeout=max_wait):
            yield False
            return
        try:
            yield True
        finally:
            self._gate.release()

    def pause(self, seconds: float) -> None:
        """Pause every worker of the cluster for *seconds*; give up the slots held."""
        if seconds > 0:
            with self._lock:
                self._slots.clear()
            self._call(self._ops[1], seconds=seconds)

    def _refill(self, max_wait: float | None) -> None:
        # Until this worker's cadence is known, one slot: consecutive cells would go stale.
        count = math.ceil(BLOCK_SECONDS / max(self._cadence, self.interval)) if self._cadence else 1
        delays = self._call(self._ops[0], count=count, spacing=self._cadence, max_wait=max_wait)
        arrived = time.monotonic()  # never earlier than the scheduler's "now"
        self._slots.extend(arrived + delay for delay in delays)

    def _learn_cadence(self, now: float) -> None:
        if self._last:
            gap = min(now - self._last, 1.0)
            self._cadence = gap if not self._cadence else 0.8 * self._cadence + 0.2 * gap
        self._last = now


def scheduler_caller(worker: Any) -> Callable[..., Any]:
    """``call(op, **kwargs)`` through *worker*'s connection to the scheduler, from a task
    thread."""
    from distributed.utils import sync

    def call(op: str, **kwargs: Any) -> Any:
        return sync(worker.loop, getattr(worker.scheduler, op), **kwargs)

    return call
