"""The HTTP layer shared by remote evidence sources (CaSS, xAPI).

One :class:`HttpClient` per worker process. It owns one ``urllib3.PoolManager``,
created lazily on the first request in the process that uses it (never inherited
through ``fork``), and gives every logical request:

* explicit connect/read timeouts plus a wall-clock deadline covering all attempts;
* retries with jittered exponential backoff on connection errors, timeouts,
  truncated bodies, undecodable bodies, 429 and 5xx, POST included (sources only
  read, so a repeated POST is harmless);
* ``Retry-After`` honoured up to a cap: a server asking for more than the cap fails
  that request at once with a clear error instead of stalling a batch;
* a slot from the shared :class:`~ceredis.sources.ratelimit.RateLimiter` before each
  attempt, and a global pause of every worker when a 429 is seen;
* a :class:`~ceredis.errors.SourceError` whose message names the method, the path
  and the server's (truncated) plain-text answer, with credentials redacted.

The retry decision is a pure object, :class:`RetryPolicy`, tested without I/O.

Environment (read by :meth:`HttpSettings.from_env`): ``CEREDIS_SOURCE_CONNECT_TIMEOUT``
(s, default 5), ``CEREDIS_SOURCE_READ_TIMEOUT`` (s, default 60),
``CEREDIS_SOURCE_DEADLINE`` (s per request including retries, default 120),
``CEREDIS_SOURCE_RETRIES`` (default 5), ``CEREDIS_SOURCE_RETRY_AFTER_CAP``
(s, default 60).
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import urllib3

from ceredis.errors import ConfigError, SourceError
from ceredis.sources.ratelimit import RateLimiter

__all__ = [
    "Decision",
    "Failure",
    "HttpClient",
    "HttpSettings",
    "Response",
    "RetryPolicy",
    "Timeouts",
    "parse_json",
    "parse_retry_after",
    "snippet",
]

log = logging.getLogger(__name__)

ENV_CONNECT_TIMEOUT = "CEREDIS_SOURCE_CONNECT_TIMEOUT"
ENV_READ_TIMEOUT = "CEREDIS_SOURCE_READ_TIMEOUT"
ENV_DEADLINE = "CEREDIS_SOURCE_DEADLINE"
ENV_RETRIES = "CEREDIS_SOURCE_RETRIES"
ENV_RETRY_AFTER_CAP = "CEREDIS_SOURCE_RETRY_AFTER_CAP"

#: How much of a server's error body goes into a message.
SNIPPET_CHARS = 300
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{80,}")


# -- pure helpers ----------------------------------------------------------------------


def snippet(body: bytes | str, limit: int = SNIPPET_CHARS) -> str:
    """A server answer as one short printable line, for error messages.

    Long base64 runs (keys, signatures a server might echo back) become ``[…]``.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = _BASE64_RUN.sub("[…]", text)
    text = " ".join(text.split())
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date).

    Returns ``None`` when absent or unreadable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
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


def parse_json(body: bytes) -> Any:
    """Decode a JSON body keeping numbers exact: ``int`` or ``decimal.Decimal``."""
    return json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=Decimal)


# -- the retry policy (pure) -----------------------------------------------------------


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


@dataclass(frozen=True)
class Decision:
    """What to do after a failed attempt: retry after ``delay`` s, or give up.

    ``pause_all`` is how long every worker should pause (set on a 429).
    ``reason`` says why the policy gives up.
    """

    retry: bool
    delay: float = 0.0
    pause_all: float = 0.0
    reason: str = ""


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

    def backoff(self, attempt: int, rand: float) -> float:
        """The jittered backoff after *attempt* failed attempts; *rand* is in [0, 1)."""
        base = min(self.backoff_max, self.backoff_base * 2 ** max(0, attempt - 1))
        return base * (1.0 - self.jitter * rand)

    def decide(
        self, failure: Failure, *, attempt: int, now: float, deadline: float, rand: float
    ) -> Decision:
        """Decide after *attempt* attempts have been made, the last one failing."""
        if failure.kind == "status" and failure.status not in self.retry_statuses:
            return Decision(False, reason="the answer is not retryable")
        delay = self.backoff(attempt, rand)
        pause_all = 0.0
        if failure.retry_after is not None and failure.status in (429, 503):
            if failure.retry_after > self.retry_after_cap:
                return Decision(
                    False,
                    pause_all=self.retry_after_cap if failure.status == 429 else 0.0,
                    reason=(
                        f"the server asked to wait {failure.retry_after:g} s (Retry-After), "
                        f"more than the {self.retry_after_cap:g} s cap; not waiting "
                        f"(raise {ENV_RETRY_AFTER_CAP} or lower {'CEREDIS_SOURCE_RATE'})"
                    ),
                )
            delay = max(delay, failure.retry_after)
        if failure.status == 429:
            pause_all = delay
        if attempt > self.retries:
            return Decision(
                False, pause_all=pause_all, reason=f"gave up after {_attempts(attempt)}"
            )
        if now + delay > deadline:
            return Decision(
                False,
                pause_all=pause_all,
                reason=(
                    f"no time left for another attempt within the request deadline "
                    f"({_attempts(attempt)} made; see {ENV_DEADLINE})"
                ),
            )
        return Decision(True, delay=delay, pause_all=pause_all)


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


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts and retry policy read from the environment (``CEREDIS_SOURCE_*``)."""

    timeouts: Timeouts = Timeouts()
    policy: RetryPolicy = RetryPolicy()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HttpSettings:
        """Read ``CEREDIS_SOURCE_{CONNECT_TIMEOUT,READ_TIMEOUT,DEADLINE,RETRIES,
        RETRY_AFTER_CAP}``; unset names keep their defaults."""
        env = os.environ if env is None else env

        def number(name: str, default: float) -> float:
            text = env.get(name, "").strip()
            if not text:
                return default
            try:
                value = float(text)
            except ValueError:
                raise ConfigError(f"{name}={text!r} is not a number of seconds") from None
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name}={text!r} must be a non-negative number")
            return value

        retries_text = env.get(ENV_RETRIES, "").strip()
        try:
            retries = int(retries_text) if retries_text else RetryPolicy.retries
        except ValueError:
            raise ConfigError(f"{ENV_RETRIES}={retries_text!r} is not an integer") from None
        try:
            timeouts = Timeouts(
                connect=number(ENV_CONNECT_TIMEOUT, Timeouts.connect),
                read=number(ENV_READ_TIMEOUT, Timeouts.read),
                deadline=number(ENV_DEADLINE, Timeouts.deadline),
            )
            policy = RetryPolicy(
                retries=retries,
                retry_after_cap=number(ENV_RETRY_AFTER_CAP, RetryPolicy.retry_after_cap),
            )
        except ConfigError as exc:
            raise ConfigError(f"source HTTP settings: {exc}") from None
        return cls(timeouts, policy)


# -- the client ------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """A complete HTTP answer: status, headers (lower-case names) and body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON with exact numbers (raises ``ValueError`` if not JSON)."""
        return parse_json(self.body)


class _AttemptFailed(Exception):
    """Internal: one attempt failed; carries the classified :class:`Failure`."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.detail)
        self.failure = failure

    def __reduce__(self) -> tuple[Any, ...]:
        return (_AttemptFailed, (self.failure,))


_TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)
#: Header names whose values are credentials: redacted from every message.
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "signaturesheet"}
)


class HttpClient:
    """Requests to one server with timeouts, retries, a shared rate limit and counters.

    *base_url* ends with ``/``; request paths are resolved against it
    (``"data"`` → ``{base_url}data``; ``"/xAPI/statements?…"`` → the server origin;
    an absolute URL must be on the same origin, so credentials never leave it).
    *headers* are sent on every request; credential headers (``Authorization``,
    ``Cookie``, ``X-Api-Key``, ``signatureSheet``) and the strings in *secrets* are
    redacted from every message (messages never include headers in the first place).
    """

    def __init__(
        self,
        base_url: str,
        *,
        limiter: RateLimiter | None = None,
        timeouts: Timeouts | None = None,
        policy: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        maxsize: int = 2,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"HTTP source base URL must be http(s)://host/…, got "
                f"{parts.scheme or '?'}://{parts.hostname or '?'}"
            )
        if parts.username or parts.password:
            raise ConfigError(
                "HTTP source base URL must not carry user:password; pass credentials "
                "through the environment"
            )
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self.name = name or parts.netloc
        self.limiter = limiter
        self.timeouts = timeouts or Timeouts()
        self.policy = policy or RetryPolicy()
        self._headers = {"Accept-Encoding": "gzip", **dict(headers or {})}
        hidden = [v for k, v in self._headers.items() if k.lower() in _SECRET_HEADERS]
        self._secrets = sorted(
            {s for s in [*hidden, *secrets] if s and len(s) >= 4}, key=len, reverse=True
        )
        self._clock = clock
        self._wallclock = wallclock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._maxsize = maxsize
        self._pool: urllib3.PoolManager | None = None
        self._pool_pid: int | None = None
        self._lock = threading.Lock()
        self._stats = {"requests": 0, "retries": 0, "errors": 0, "throttled": 0, "waited_s": 0.0}

    # -- public API --------------------------------------------------------------------

    def get(
        self,
        path: str,
        fields: Mapping[str, str] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        ok: Iterable[int] = (),
    ) -> Response:
        """GET *path* with *fields* as the query string; see :meth:`request`."""
        return self.request("GET", path, fields=fields, headers=headers, ok=ok)

    def post_form(
        self,
        path: str,
        fields: Mapping[str, str],
        *,
        headers: Mapping[str, str] | None = None,
        ok: Iterable[int] = (),
    ) -> Response:
        """POST *fields* as ``application/x-www-form-urlencoded``; see :meth:`request`."""
        return self.request("POST", path, form=fields, headers=headers, ok=ok)

    def get_json(self, path: str, fields: Mapping[str, str] | None = None, **kw: Any) -> Any:
        """GET and decode JSON (exact numbers); an undecodable body is retried."""
        return self.request("GET", path, fields=fields, decode=parse_json, **kw).body

    def post_form_json(self, path: str, fields: Mapping[str, str], **kw: Any) -> Any:
        """POST a form and decode JSON (exact numbers); an undecodable body is retried."""
        return self.request("POST", path, form=fields, decode=parse_json, **kw).body

    def request(
        self,
        method: str,
        path: str,
        *,
        fields: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        ok: Iterable[int] = (),
        decode: Callable[[bytes], Any] | None = None,
    ) -> Response:
        """Send one logical request, retrying as the policy says.

        Success is a 2xx status or one listed in *ok* (e.g. ``ok=(404,)`` to inspect
        a "not found"). With *decode*, the response's ``body`` is ``decode(bytes)``
        and a decode error counts as a retryable failure. Raises
        :class:`~ceredis.errors.SourceError` when the request cannot succeed.
        """
        url, shown = self._resolve(path, fields)
        body = None
        send_headers = dict(self._headers)
        if headers:
            send_headers.update(headers)
        if form is not None:
            body = urllib.parse.urlencode(list(form.items())).encode("ascii")
            send_headers["Content-Type"] = "application/x-www-form-urlencoded"
        accepted = frozenset(ok)
        start = self._clock()
        deadline = start + self.timeouts.deadline
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - self._clock()
            if self.limiter is not None:
                waited = self.limiter.acquire(max_wait=max(0.0, remaining))
                if waited is None:
                    raise self._give_up(
                        method,
                        shown,
                        attempt - 1,
                        "the shared rate limit has no free slot within the request deadline "
                        f"(see CEREDIS_SOURCE_RATE and {ENV_DEADLINE})",
                        None,
                    )
                self._count("waited_s", waited)
                remaining = deadline - self._clock()
            if remaining <= 0:
                raise self._give_up(
                    method, shown, attempt - 1, f"request deadline passed ({ENV_DEADLINE})", None
                )
            try:
                response = self._attempt(method, url, body, send_headers, remaining, deadline)
                if not (200 <= response.status < 300 or response.status in accepted):
                    raise _AttemptFailed(self._status_failure(response))
                if decode is not None and 200 <= response.status < 300:
                    try:
                        decoded = decode(response.body)
                    except (ValueError, UnicodeDecodeError) as exc:
                        raise _AttemptFailed(
                            Failure(
                                "bad_body",
                                f"the answer is not valid JSON ({type(exc).__name__}): "
                                f"{snippet(response.body, 120)!r}",
                                status=response.status,
                            )
                        ) from None
                    response = Response(response.status, response.headers, decoded)
                return response
            except _AttemptFailed as exc:
                failure = exc.failure
            if failure.status == 429:
                self._count("throttled")
            decision = self.policy.decide(
                failure,
                attempt=attempt,
                now=self._clock(),
                deadline=deadline,
                rand=self._rng.random(),
            )
            if decision.pause_all > 0 and self.limiter is not None:
                self.limiter.pause(decision.pause_all)
            if not decision.retry:
                raise self._give_up(method, shown, attempt, decision.reason, failure)
            self._count("retries")
            log.info(
                "%s: %s %s failed (%s); retry %d in %.2f s",
                self.name,
                method,
                shown,
                self.redact(failure.describe()),
                attempt,
                decision.delay,
            )
            self._sleep(decision.delay)

    def stats(self) -> dict[str, float]:
        """Counters: ``requests`` (attempts sent), ``retries``, ``errors`` (requests
        given up), ``throttled`` (429 answers) and ``waited_s`` (rate-limit waits)."""
        with self._lock:
            return dict(self._stats)

    def redact(self, text: str) -> str:
        """*text* with every configured secret replaced by ``[redacted]``."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    def close(self) -> None:
        """Close the connection pool (a new one is made if the client is used again)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.clear()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpClient({self.name!r})"

    def __getstate__(self) -> dict[str, Any]:
        # A client may be pickled to a worker before use: never ship a pool or a lock.
        state = self.__dict__.copy()
        state["_pool"] = None
        state["_pool_pid"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- internals ---------------------------------------------------------------------

    def _count(self, key: str, amount: float = 1) -> None:
        with self._lock:
            self._stats[key] += amount

    def _pool_manager(self) -> urllib3.PoolManager:
        pid = os.getpid()
        if self._pool is None or self._pool_pid != pid:
            # Created in the process that uses it: a pool inherited through fork would
            # share sockets with the parent.
            self._pool = urllib3.PoolManager(num_pools=4, maxsize=self._maxsize, block=False)
            self._pool_pid = pid
        return self._pool

    def _resolve(self, path: str, fields: Mapping[str, str] | None) -> tuple[str, str]:
        url = urllib.parse.urljoin(self.base_url, path)
        parts = urllib.parse.urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self._origin:
            raise SourceError(
                f"{self.name}: refusing to follow {parts.scheme}://{parts.hostname}/…, "
                f"which is not the configured server"
            )
        if fields:
            query = urllib.parse.urlencode(list(fields.items()))
            url = f"{url}{'&' if parts.query else '?'}{query}"
        return url, parts.path  # the query string is left out of messages

    def _attempt(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        remaining: float,
        deadline: float,
    ) -> Response:
        pool = self._pool_manager()
        timeout = urllib3.Timeout(
            connect=min(self.timeouts.connect, remaining), read=min(self.timeouts.read, remaining)
        )
        self._count("requests")
        try:
            resp = pool.request(
                method,
                url,
                body=body,
                headers=dict(headers),
                timeout=timeout,
                retries=False,
                redirect=False,
                preload_content=False,
            )
        except urllib3.exceptions.NameResolutionError:
            raise _AttemptFailed(
                Failure("connection", "cannot resolve the host name (DNS)")
            ) from None
        except urllib3.exceptions.NewConnectionError as exc:
            # A subclass of ConnectTimeoutError in urllib3 2.x: not a timeout.
            reason = str(exc).rsplit("Failed to establish a new connection: ", 1)[-1]
            raise _AttemptFailed(
                Failure("connection", f"cannot connect ({snippet(reason, 120)})")
            ) from None
        except urllib3.exceptions.ConnectTimeoutError:
            raise _AttemptFailed(Failure("timeout", "connect timeout")) from None
        except urllib3.exceptions.ReadTimeoutError:
            raise _AttemptFailed(
                Failure("timeout", f"no answer within the {timeout.read_timeout:g} s read timeout")
            ) from None
        except _TRANSPORT_ERRORS as exc:
            raise _AttemptFailed(Failure("connection", _transport_detail(exc))) from None
        chunks: list[bytes] = []
        try:
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if self._clock() > deadline:
                    raise _AttemptFailed(
                        Failure(
                            "timeout",
                            f"the body was still arriving at the deadline ({ENV_DEADLINE})",
                        )
                    )
        except urllib3.exceptions.ReadTimeoutError:
            resp.close()
            raise _AttemptFailed(
                Failure("timeout", "the body stopped arriving (read timeout)")
            ) from None
        except _AttemptFailed:
            resp.close()
            raise
        except _TRANSPORT_ERRORS as exc:
            resp.close()
            raise _AttemptFailed(
                Failure("truncated", f"the body was cut short ({_transport_detail(exc)})")
            ) from None
        finally:
            resp.release_conn()
        headers_out = {k.lower(): v for k, v in resp.headers.items()}
        return Response(resp.status, headers_out, b"".join(chunks))

    def _status_failure(self, response: Response) -> Failure:
        retry_after = parse_retry_after(response.headers.get("retry-after"), self._wallclock())
        return Failure(
            "status",
            snippet(response.body),
            status=response.status,
            retry_after=retry_after,
        )

    def _give_up(
        self, method: str, shown: str, attempts: int, reason: str, failure: Failure | None
    ) -> SourceError:
        self._count("errors")
        what = f"{self.name}: {method} {shown}"
        if failure is None:
            message = f"{what} failed: {reason}"
        elif reason == "the answer is not retryable":
            message = f"{what} failed: {failure.describe()}"
        else:
            message = f"{what} failed: {reason}; last error: {failure.describe()}"
        message = self.redact(message)
        log.warning("%s", message)
        return SourceError(message)


def _attempts(n: int) -> str:
    return f"{n} attempt{'s' if n != 1 else ''}"


def _transport_detail(exc: BaseException) -> str:
    """A short description of a transport error, without URLs or headers."""
    # urllib3 errors often wrap the real cause; the innermost one says the most.
    inner: BaseException = exc
    seen = 0
    while seen < 5:
        nxt = getattr(inner, "reason", None) or inner.__context__
        if not isinstance(nxt, BaseException) or nxt is inner:
            break
        inner = nxt
        seen += 1
    name = type(inner).__name__
    text = str(inner)
    # Drop anything URL-like (urllib3 messages embed the pool and the URL).
    text = " ".join(w for w in text.split() if "://" not in w and "host=" not in w)
    return snippet(f"{name}: {text}" if text else name, 160)
