"""The HTTP client shared by remote evidence sources (CaSS, xAPI).

One :class:`HttpClient` per worker process, used by its fetch threads. It owns one
pool of keep-alive connections to its one server
(:class:`~ceredis.sources.connections.ConnectionPool`), created lazily on the first
request in the process that uses it (never inherited through ``fork``) and sized for
the batch's requests in flight, and gives every logical request:

* explicit connect/read timeouts plus a wall-clock deadline covering all attempts;
* retries with jittered exponential backoff on connection errors, timeouts,
  truncated bodies, undecodable bodies, 429 and 5xx, POST included (sources only
  read, so a repeated POST is harmless);
* ``Retry-After`` honoured up to a cap: a server asking for more than the cap fails
  that request at once with a clear error instead of stalling a batch;
* an in-flight slot and a rate slot from the shared
  :class:`~ceredis.sources.ratelimit.RateLimiter` for each attempt, and a global pause
  of every worker when a 429 is seen;
* a :class:`~ceredis.errors.SourceError` whose message names the method, the path
  and the server's (truncated) plain-text answer, with credentials redacted.

When to retry and how long to wait is decided by the pure :mod:`ceredis.sources.retry`.
"""

from __future__ import annotations

import logging
import os
import random
import re
import socket
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ceredis import exactjson
from ceredis.errors import ConfigError, SourceError, SourceUnavailable
from ceredis.sources.connections import (
    Answer,
    Closed,
    Connection,
    ConnectionPool,
    ProtocolError,
    decoder,
    request_head,
)
from ceredis.sources.ratelimit import RateLimiter
from ceredis.sources.retry import (
    ENV_DEADLINE,
    ENV_RATE,
    Decision,
    Failure,
    RetryPolicy,
    Timeouts,
    Verdict,
    parse_retry_after,
)

__all__ = [
    "Decision",
    "Failure",
    "HttpClient",
    "Response",
    "RetryPolicy",
    "Timeouts",
    "parse_json",
    "parse_retry_after",
    "snippet",
]

log = logging.getLogger(__name__)

#: How much of a server's error body goes into a message.
SNIPPET_CHARS = 300
ENV_IN_FLIGHT = "CEREDIS_IN_FLIGHT"  # named in messages (see ceredis.config.SETTINGS)
#: Most connections kept open to the server per process (one per fetch thread).
MAX_CONNECTIONS = 64
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{80,}")


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


def parse_json(body: bytes) -> Any:
    """Decode a JSON body keeping numbers exact: ``int`` or ``decimal.Decimal``, as
    ``exactjson.loads`` does (:func:`~ceredis.exactjson.loads_document`, faster on pages)."""
    return exactjson.loads_document(body)


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


@dataclass(frozen=True)
class _Request:
    """One logical request as sent on every attempt (``shown`` is its path, for messages)."""

    method: str
    url: str
    shown: str
    body: bytes | None
    headers: Mapping[str, str]
    ok: frozenset[int]
    decode: Callable[[bytes], Any] | None


class _AttemptFailed(Exception):
    """Internal: one attempt failed; carries the classified :class:`Failure`."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.detail)
        self.failure = failure

    def __reduce__(self) -> tuple[Any, ...]:
        return (_AttemptFailed, (self.failure,))


#: A request target sent as it is (anything else is percent-encoded first).
_PLAIN_TARGET = re.compile(r"[!#-~]*")
_TARGET_SAFE = "!#$%&'()*+,-./:;=?@[]_~"
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
        maxsize: int | None = None,
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
        self._netloc = parts.netloc  # the Host header
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self.name = name or parts.netloc
        self.limiter = limiter
        self.timeouts = timeouts or Timeouts()
        self.policy = policy or RetryPolicy()
        self._headers = {"Accept-Encoding": "gzip", **dict(headers or {})}
        try:
            request_head("GET", "/", self._netloc, self._headers, None)
        except ValueError as exc:
            raise ConfigError(f"HTTP source {self.name}: {exc}") from None
        hidden = [v for k, v in self._headers.items() if k.lower() in _SECRET_HEADERS]
        self._secrets = sorted(
            {s for s in [*hidden, *secrets] if s and len(s) >= 4}, key=len, reverse=True
        )
        self._clock = clock
        self._wallclock = wallclock
        self._sleep = sleep
        self._rng = rng or random.Random()
        bound = limiter.in_flight if limiter is not None else None
        self._maxsize = maxsize or min(MAX_CONNECTIONS, max(2, bound or 0))
        self._pool: ConnectionPool | None = None
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
        send = _Request(method, url, shown, *self._body(form, headers), frozenset(ok), decode)
        deadline = self._clock() + self.timeouts.deadline
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._try(send, deadline)
            except _AttemptFailed as exc:
                self._after(send, exc.failure, attempt, deadline)

    def _body(
        self, form: Mapping[str, str] | None, headers: Mapping[str, str] | None
    ) -> tuple[bytes | None, dict[str, str]]:
        """The body and headers to send: the client's headers, then the call's."""
        send_headers = {**self._headers, **dict(headers or {})}
        if form is None:
            return None, send_headers
        send_headers["Content-Type"] = "application/x-www-form-urlencoded"
        return urllib.parse.urlencode(list(form.items())).encode("ascii"), send_headers

    def _try(self, send: _Request, deadline: float) -> Response:
        """One attempt, holding one of the batch's in-flight slots for the exchange (not
        for decoding the body: another thread's request is in flight meanwhile)."""
        if self.limiter is None:
            return self._decoded(send, self._try_slot(send, deadline))
        with self.limiter.in_flight_slot(max(0.0, deadline - self._clock())) as held:
            if not held:
                raise self._give_up(
                    send,
                    "no request slot freed within the request deadline (see "
                    f"{ENV_IN_FLIGHT} and {ENV_DEADLINE})",
                )
            response = self._try_slot(send, deadline)
        return self._decoded(send, response)

    def _try_slot(self, send: _Request, deadline: float) -> Response:
        """One attempt: a rate-limit slot, the exchange, the status checked."""
        remaining = deadline - self._clock()
        if self.limiter is not None:
            waited = self.limiter.acquire(max_wait=max(0.0, remaining))
            if waited is None:
                raise self._give_up(
                    send,
                    "the shared rate limit has no free slot within the request deadline "
                    f"(see {ENV_RATE} and {ENV_DEADLINE})",
                )
            self._count("waited_s", waited)
            remaining = deadline - self._clock()
        if remaining <= 0:
            raise self._give_up(send, f"request deadline passed ({ENV_DEADLINE})")
        response = self._attempt(
            send.method, send.url, send.body, send.headers, remaining, deadline
        )
        if not (200 <= response.status < 300 or response.status in send.ok):
            raise _AttemptFailed(self._status_failure(response))
        return response

    def _decoded(self, send: _Request, response: Response) -> Response:
        """*response* with its body decoded as the request asks (a failure is retried)."""
        if send.decode is None or not 200 <= response.status < 300:
            return response
        try:
            decoded = send.decode(response.body)
        except (ValueError, UnicodeDecodeError) as exc:
            detail = f"the answer is not valid JSON ({type(exc).__name__}): "
            raise _AttemptFailed(
                Failure("bad_body", detail + repr(snippet(response.body, 120)), response.status)
            ) from None
        return Response(response.status, response.headers, decoded)

    def _after(self, send: _Request, failure: Failure, attempt: int, deadline: float) -> None:
        """After a failed attempt: pause everyone if throttled, then wait or give up."""
        if failure.status == 429:
            self._count("throttled")
        decision = self.policy.decide(
            failure, attempt=attempt, now=self._clock(), deadline=deadline, rand=self._rng.random()
        )
        if decision.pause_all > 0 and self.limiter is not None:
            self.limiter.pause(decision.pause_all)
        if not decision.retry:
            raise self._give_up(send, decision.reason, failure, decision)
        self._count("retries")
        log.info(
            "%s: %s %s failed (%s); retry %d in %.2f s",
            self.name,
            send.method,
            send.shown,
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
            pool.close()

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

    def _connections(self) -> ConnectionPool:
        """This process's pool of connections to the server."""
        pid = os.getpid()
        pool = self._pool
        if pool is None or self._pool_pid != pid:
            with self._lock:
                if self._pool is None or self._pool_pid != pid:
                    # Created in the process that uses it: a pool inherited through fork
                    # would share sockets with the parent.
                    self._pool = ConnectionPool(
                        self._scheme, self._host, self._port, maxsize=self._maxsize
                    )
                    self._pool_pid = pid
                pool = self._pool
        return pool

    def _resolve(self, path: str, fields: Mapping[str, str] | None) -> tuple[str, str]:
        """The request target (path and query) on the origin, and the path for messages."""
        url = urllib.parse.urljoin(self.base_url, path)
        target = url[len(self._origin) :]
        if not url.startswith(self._origin) or target[:1] not in ("/", "?", ""):
            parts = urllib.parse.urlsplit(url)
            raise SourceError(
                f"{self.name}: refusing to follow {parts.scheme}://{parts.hostname}/…, "
                f"which is not the configured server"
            )
        shown, query_mark, _ = target.partition("?")
        if fields:
            query = urllib.parse.urlencode(list(fields.items()))
            target = f"{target}{'&' if query_mark else '?'}{query}"
        return target or "/", shown or "/"  # the query string is left out of messages

    def _attempt(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        remaining: float,
        deadline: float,
    ) -> Response:
        """One exchange on a pooled connection; the connection is kept only if it is whole.

        A kept-alive connection the server closed meanwhile fails before any answer: the
        request is then sent once more, on a new connection, as part of the same attempt.
        """
        pool = self._connections()
        read = min(self.timeouts.read, remaining)
        head = request_head(method, _target(url), self._netloc, headers, body)
        self._count("requests")
        conn = pool.idle()
        if conn is not None:
            try:
                return self._exchange(pool, conn, method, head, body, read, deadline)
            except _Stale:
                conn.close()
        conn = _connect(pool, min(self.timeouts.connect, remaining))
        try:
            return self._exchange(pool, conn, method, head, body, read, deadline)
        except _Stale:
            conn.close()
            raise _AttemptFailed(
                Failure("connection", "the server closed the connection")
            ) from None

    def _exchange(
        self,
        pool: ConnectionPool,
        conn: Connection,
        method: str,
        head: bytes,
        body: bytes | None,
        read: float,
        deadline: float,
    ) -> Response:
        """Send the request on *conn* and read the whole answer; _Stale if the connection
        had ended before any byte of an answer came."""
        try:
            conn.sock.settimeout(read)
            try:
                conn.send(head, body)
                answer = conn.answer(method)
            except (BrokenPipeError, ConnectionResetError):
                raise _Stale from None
            except Closed as exc:
                if not exc.answered:
                    raise _Stale from None
                raise _AttemptFailed(Failure("connection", str(exc))) from None
            except TimeoutError:
                raise _AttemptFailed(
                    Failure("timeout", f"no answer within the {read:g} s read timeout")
                ) from None
            except (ProtocolError, OSError) as exc:
                raise _AttemptFailed(Failure("connection", _transport_detail(exc))) from None
            response = Response(
                answer.status, answer.headers, self._read_body(conn, answer, deadline)
            )
        except BaseException:
            conn.close()
            raise
        if answer.will_close:
            conn.close()
        else:
            pool.give_back(conn)
        return response

    def _read_body(self, conn: Connection, answer: Answer, deadline: float) -> bytes:
        """The whole body, decoded (gzip, deflate), or _AttemptFailed if it stops, breaks,
        cannot be decoded or passes the deadline."""
        chunks: list[bytes] = []
        decode = decoder(answer.headers.get("content-encoding"))

        def take(chunk: bytes) -> None:
            chunks.append(decode.decode(chunk) if decode else chunk)
            if self._clock() > deadline:
                raise _AttemptFailed(
                    Failure(
                        "timeout", f"the body was still arriving at the deadline ({ENV_DEADLINE})"
                    )
                )

        try:
            conn.body(answer, take)
            if decode and chunks:
                chunks.append(decode.flush())
        except TimeoutError:
            raise _AttemptFailed(
                Failure("timeout", "the body stopped arriving (read timeout)")
            ) from None
        except (Closed, ProtocolError, OSError, zlib.error) as exc:
            raise _AttemptFailed(
                Failure("truncated", f"the body was cut short ({_transport_detail(exc)})")
            ) from None
        return b"".join(chunks)

    def _status_failure(self, response: Response) -> Failure:
        retry_after = parse_retry_after(response.headers.get("retry-after"), self._wallclock())
        return Failure(
            "status",
            snippet(response.body),
            status=response.status,
            retry_after=retry_after,
        )

    def _give_up(
        self,
        send: _Request,
        reason: str,
        failure: Failure | None = None,
        decision: Decision | None = None,
    ) -> SourceError:
        self._count("errors")
        what = f"{self.name}: {send.method} {send.shown}"
        if failure is None:
            message = f"{what} failed: {reason}"
        elif decision is not None and decision.kind is Verdict.NOT_RETRYABLE:
            message = f"{what} failed: {failure.describe()}"
        else:
            message = f"{what} failed: {reason}; last error: {failure.describe()}"
        message = self.redact(message)
        log.warning("%s", message)
        return (SourceUnavailable if _upstream_down(failure, decision) else SourceError)(message)


def _upstream_down(failure: Failure | None, decision: Decision | None) -> bool:
    """Whether a final failure means the server is down (an outage to wait out) rather than
    a final answer about this request (a 4xx, an undecodable body)."""
    if failure is None:  # the deadline or the shared rate limit ran out
        return True
    if decision is not None and decision.kind is Verdict.NOT_RETRYABLE:
        return False
    if failure.kind == "status":
        return failure.status is not None and (failure.status >= 500 or failure.status == 429)
    return failure.kind in ("connection", "timeout", "truncated")


def _transport_detail(exc: BaseException) -> str:
    """A short description of a transport error, without URLs or headers."""
    # An error raised while handling another may hide the cause; the innermost says most.
    inner: BaseException = exc
    seen = 0
    while seen < 5:
        hidden = inner.__suppress_context__  # raised "from None": its own words suffice
        nxt = getattr(inner, "reason", None) or (None if hidden else inner.__context__)
        if not isinstance(nxt, BaseException) or nxt is inner:
            break
        inner = nxt
        seen += 1
    name = type(inner).__name__
    text = str(inner)
    # Drop anything URL-like: a message must not carry a URL and its query.
    text = " ".join(w for w in text.split() if "://" not in w and "host=" not in w)
    return snippet(f"{name}: {text}" if text else name, 160)


def _connect(pool: ConnectionPool, timeout: float) -> Connection:
    """A new connection, or _AttemptFailed saying why it could not be opened."""
    try:
        return pool.connect(timeout)
    except socket.gaierror:
        raise _AttemptFailed(Failure("connection", "cannot resolve the host name (DNS)")) from None
    except TimeoutError:
        raise _AttemptFailed(Failure("timeout", "connect timeout")) from None
    except OSError as exc:
        raise _AttemptFailed(
            Failure("connection", f"cannot connect ({_transport_detail(exc)})")
        ) from None


class _Stale(Exception):
    """Internal: the connection had ended before any byte of an answer came."""


def _target(url: str) -> str:
    """The request target as it may be sent: printable ASCII, no spaces."""
    if _PLAIN_TARGET.fullmatch(url):
        return url
    return urllib.parse.quote(url, safe=_TARGET_SAFE)
