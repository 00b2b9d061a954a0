"""The skeleton every remote source shares: one HTTP client, its counters, closing it.

A remote source (CaSS, xAPI) is opened from its URI and the :class:`~ceredis.config.Settings`
in the worker process that uses it, after fork; it owns one
:class:`~ceredis.sources.http.HttpClient`, whose connection pool it closes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Self

from ceredis.config import Settings
from ceredis.sources.http import HttpClient
from ceredis.sources.ratelimit import RateLimiter
from ceredis.sources.retry import RetryPolicy, Timeouts

__all__ = ["RemoteSource", "http_client"]


def http_client(
    base_url: str,
    settings: Settings,
    limiter: RateLimiter | None,
    *,
    name: str,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> HttpClient:
    """A client with the configured timeouts and retries, taking slots from *limiter*
    (the batch's shared one; without it, a limiter local to this process)."""
    return HttpClient(
        base_url,
        limiter=limiter if limiter is not None else RateLimiter.from_settings(settings.rate),
        timeouts=Timeouts.from_settings(settings.http),
        policy=RetryPolicy.from_settings(settings.http),
        headers=headers,
        secrets=secrets,
        name=name,
    )


class RemoteSource:
    """A source over one HTTP client; subclasses add ``fetch``, ``agents`` and ``ping``."""

    name: str
    _http: HttpClient

    @classmethod
    def check_uri(cls, uri: str, settings: Settings) -> str:
        """Validate *uri* with *settings* without network; return a display name."""
        raise NotImplementedError

    @classmethod
    def from_uri(cls, uri: str, *, settings: Settings, limiter: RateLimiter | None = None) -> Self:
        """Open the source (no network yet). Call this in the worker, not before fork."""
        raise NotImplementedError

    def ping(self) -> Any:
        """Check that the server answers, with a clear SourceError if not."""
        raise NotImplementedError

    def stats(self) -> dict[str, float]:
        """The HTTP counters (requests, retries, errors, throttled, waited_s)."""
        return self._http.stats()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
