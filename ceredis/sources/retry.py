"""When to retry a request to a remote source, and how long to wait: pure, no I/O.

The retry policy, the timeouts and the ``Retry-After`` parsing, apart from the client
that applies them (:mod:`ceredis.sources.http`), as urllib3 keeps ``util/retry.py``
and ``util/timeout.py`` apart from its connection pools. ``now`` and the random draw
are arguments, so every decision is tested without a clock or a server.
"""

from __future__ import annotations

import email.utils
import enum
import math
from dataclasses import dataclass, field

from ceredis.config import HttpSettings
from ceredis.errors import ConfigError

__all__ = ["Decision", "Failure", "RetryPolicy", "Timeouts", "Verdict", "parse_retry_after"]

#: The settings named in messages (see :data:`ceredis.config.SETTINGS`).
ENV_DEADLINE = "CEREDIS_SOURCE_DEADLINE"
ENV_RETRY_AFTER_CAP = "CEREDIS_SOURCE_RETRY_AFTER_CAP"
ENV_RATE = "CEREDIS_SOURCE_RATE"


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date).

    Returns ``None`` when absent or unreadable; never negative.
    """
    value = (value or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now_epoch
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class Failure:
    """What went wrong with one attempt.

    ``kind`` is ``"status"`` (an HTTP status, see ``status``), ``"connection"``,
    ``"timeout"``, ``"truncated"`` (the body ended early) or ``"bad_body"`` (the body
    could not be decoded). ``retry_after`` is in seconds, already parsed.
    """

    kind: str
    detail: str
    status: int | None = None
    retry_after: float | None = None

    def describe(self) -> str:
        """The failure as a phrase for messages."""
        if self.kind == "status":
            return f"HTTP {self.status}" + (f": {self.detail}" if self.detail else "")
        return self.detail


class Verdict(enum.Enum):
    """What a :class:`Decision` says: retry, or why not."""

    RETRY = "retry"
    NOT_RETRYABLE = "not retryable"  # the answer itself is final (a 4xx)
    WAIT_TOO_LONG = "wait too long"  # Retry-After beyond the cap
    EXHAUSTED = "exhausted"  # every retry spent
    OUT_OF_TIME = "out of time"  # the next wait would pass the deadline


@dataclass(frozen=True)
class Decision:
    """What to do after a failed attempt: retry after ``delay`` s, or give up.

    ``pause_all`` is how long every worker should pause (set on a 429); ``reason``
    says, for people, why the policy gives up.
    """

    kind: Verdict
    delay: float = 0.0
    pause_all: float = 0.0
    reason: str = ""

    @property
    def retry(self) -> bool:
        """Whether to try again."""
        return self.kind is Verdict.RETRY


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before retrying; a pure object (``now`` is an argument).

    Backoff after the k-th failed attempt is ``min(backoff_max, backoff_base·2^(k-1))``
    scaled by a factor drawn in ``[1 - jitter, 1]``. ``Retry-After`` (on 429 and 503)
    replaces the backoff when longer; above ``retry_after_cap`` the policy gives up at
    once rather than sleep.
    """

    retries: int = 5
    backoff_base: float = 0.25
    backoff_max: float = 10.0
    jitter: float = 0.5
    retry_after_cap: float = 60.0
    retry_statuses: frozenset[int] = field(default=frozenset({429, 500, 502, 503, 504}))

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, got {self.retries}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"jitter must be within [0, 1], got {self.jitter}")
        if not self.retry_after_cap >= 0:
            raise ConfigError(f"retry_after_cap must be >= 0, got {self.retry_after_cap}")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise ConfigError("backoff_base and backoff_max must be >= 0")

    @classmethod
    def from_settings(cls, settings: HttpSettings) -> RetryPolicy:
        """The policy the configured retries and Retry-After cap give."""
        return cls(retries=settings.retries, retry_after_cap=settings.retry_after_cap)

    def backoff(self, attempt: int, rand: float) -> float:
        """The jittered backoff after *attempt* failed attempts; *rand* is in [0, 1)."""
        base = min(self.backoff_max, self.backoff_base * 2 ** max(0, attempt - 1))
        return base * (1.0 - self.jitter * rand)

    def decide(
        self, failure: Failure, *, attempt: int, now: float, deadline: float, rand: float
    ) -> Decision:
        """Decide after *attempt* attempts have been made, the last one failing."""
        if failure.kind == "status" and failure.status not in self.retry_statuses:
            return Decision(Verdict.NOT_RETRYABLE, reason="the answer is not retryable")
        delay = self.backoff(attempt, rand)
        if failure.retry_after is not None and failure.status in (429, 503):
            if failure.retry_after > self.retry_after_cap:
                return Decision(
                    Verdict.WAIT_TOO_LONG,
                    pause_all=self.retry_after_cap if failure.status == 429 else 0.0,
                    reason=(
                        f"the server asked to wait {failure.retry_after:g} s (Retry-After), "
                        f"more than the {self.retry_after_cap:g} s cap; not waiting "
                        f"(raise {ENV_RETRY_AFTER_CAP} or lower {ENV_RATE})"
                    ),
                )
            delay = max(delay, failure.retry_after)
        pause_all = delay if failure.status == 429 else 0.0
        if attempt > self.retries:
            return Decision(
                Verdict.EXHAUSTED, pause_all=pause_all, reason=f"gave up after {attempts(attempt)}"
            )
        if now + delay > deadline:
            return Decision(
                Verdict.OUT_OF_TIME,
                pause_all=pause_all,
                reason=(
                    f"no time left for another attempt within the request deadline "
                    f"({attempts(attempt)} made; see {ENV_DEADLINE})"
                ),
            )
        return Decision(Verdict.RETRY, delay=delay, pause_all=pause_all)


@dataclass(frozen=True)
class Timeouts:
    """Connect and read (between bytes) timeouts, and a wall-clock deadline in seconds
    for one logical request including its retries, waits and rate-limit slots."""

    connect: float = 5.0
    read: float = 60.0
    deadline: float = 120.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "deadline"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"timeout {name!r} must be a positive number, got {value!r}")

    @classmethod
    def from_settings(cls, settings: HttpSettings) -> Timeouts:
        """The configured timeouts."""
        return cls(settings.connect_timeout, settings.read_timeout, settings.deadline)


def attempts(n: int) -> str:
    """``"1 attempt"``, ``"3 attempts"``."""
    return f"{n} attempt{'s' if n != 1 else ''}"
