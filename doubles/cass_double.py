"""A CaSS test double: a real HTTP server on 127.0.0.1 that behaves like CaSS 1.7.

For tests and benchmarks (cass-api.md §5). Pure stdlib (``ThreadingHTTPServer``),
started in a thread::

    with CassDouble.from_evidence(records, competencies=uuids, engine_key=key) as cass:
        settings = load_settings(env=cass.source_env(key_path))
        source = CassSource.from_uri(cass.source_uri, settings=settings)

Routes: ``GET /api/ping``; search on ``GET|POST /api/data`` and the deprecated
``GET|POST /api/sky/repo/search`` (form fields ``searchParams`` as a JSON *string*,
``data``, ``signatureSheet``; urlencoded or multipart); get by id
``GET|POST /api/data/{type}/{uid}[/{version}]`` and ``/api/data/{uid}``;
``POST /api/sky/repo/multiGet``. Errors are plain text, as CaSS sends them.

Behaviour: the query subset of :mod:`doubles.cass_query` (else 400), the
10,000-result window (400 with the Elasticsearch text), ``sort`` as a JSON string
(else 400), ``index_hint``, KBAC "strip" (default: encrypted values and reader-only
objects are removed unless a signature-sheet owner is a recipient), "off" and "strict"
(signatures and expiry checked: 496/422/419/451), deterministic order by ``@version``
then ``@id`` with an optional seeded "chaos" shuffle, fault rules (:class:`Fault`), a
server-side token-bucket rate limit, and a request :attr:`CassDouble.journal`.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import json
import math
import random
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from doubles.cass_query import (
    QuerySyntaxError,
    fold,
    is_whole_only,
    parse_query,
    short_types,
    tokens,
    walk,
)

__all__ = ["OBJECT_NOT_FOUND", "CassDouble", "Fault", "JournalEntry"]

OBJECT_NOT_FOUND = (
    "Object not found or you did not supply sufficient permissions to access the object."
)
UNKNOWN_SEARCH_ERROR = (
    "An unknown error has occurred. If using the 'start' parameter, request may be out of bounds."
)
RATE_LIMIT_BODY = '{"error":"Too many requests, please try again later."}'
RESULT_WINDOW = 10_000
_ROUTES = ("ping", "search", "get", "multiget", "*")


# -- faults ----------------------------------------------------------------------------


@dataclass
class Fault:
    """A fault rule (cass-api.md §5.3): *where* it applies and *what* it does.

    Matching: ``route`` (search/get/multiget/ping/``*``), ``method``, ``path_regex``;
    then ``nth`` (only the n-th matching request, 1-based), ``every`` (every n-th),
    ``probability`` (seeded RNG), and ``times`` (fires at most that often). Actions:
    ``latency`` (adds ``delay_s`` ± ``jitter_s``; stacks with others), ``hang`` (no
    answer for ``delay_s``), ``status`` (``status``, ``body``, ``headers``,
    ``content_type``), ``reset`` (connection reset; after ``after_bytes`` body bytes
    if set), ``truncate`` (``Content-Length`` announced, ``after_bytes`` sent),
    ``slow_body`` (``bytes_per_s``), ``bad_json`` (200 with an HTML page) and
    ``drop_results`` (a search page keeps only ``keep`` items). Build them with the
    class methods (``Fault.cass_429(retry_after=1, times=2)``).
    """

    action: str
    route: str = "*"
    method: str | None = None
    path_regex: str | None = None
    nth: int | None = None
    every: int | None = None
    probability: float | None = None
    times: int | None = None
    delay_s: float = 0.0
    jitter_s: float = 0.0
    status: int = 503
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "text/plain; charset=utf-8"
    after_bytes: int | None = None
    bytes_per_s: float = 200.0
    keep: int = 0
    name: str = ""
    seen: int = 0
    fired: int = 0

    _ACTIONS = frozenset(
        {"latency", "hang", "status", "reset", "truncate", "slow_body", "bad_json", "drop_results"}
    )

    def __post_init__(self) -> None:
        if self.action not in self._ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}")
        if self.route not in _ROUTES:
            raise ValueError(f"unknown route {self.route!r}; one of {', '.join(_ROUTES)}")
        if not self.name:
            self.name = self.action if self.action != "status" else f"status_{self.status}"

    # presets ------------------------------------------------------------------------

    @classmethod
    def latency(cls, delay_s: float, jitter_s: float = 0.0, **match: Any) -> Fault:
        """Delay before the answer."""
        return cls("latency", delay_s=delay_s, jitter_s=jitter_s, **match)

    @classmethod
    def hang(cls, delay_s: float = 3600.0, **match: Any) -> Fault:
        """No answer for *delay_s* (beyond the client's read timeout)."""
        return cls("hang", delay_s=delay_s, **match)

    @classmethod
    def http_status(
        cls,
        status: int,
        body: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str = "text/plain; charset=utf-8",
        **match: Any,
    ) -> Fault:
        """A plain answer with *status* and *body*."""
        return cls(
            "status",
            status=status,
            body=body,
            headers=dict(headers or {}),
            content_type=content_type,
            **match,
        )

    @classmethod
    def cass_429(cls, retry_after: float = 1, **match: Any) -> Fault:
        """CaSS's express-rate-limit answer: JSON body, Retry-After, RateLimit-* headers."""
        ra = str(math.ceil(retry_after))
        return cls.http_status(
            429,
            RATE_LIMIT_BODY,
            headers={
                "Retry-After": ra,
                "RateLimit-Policy": "100;w=900",
                "RateLimit-Limit": "100",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": ra,
            },
            content_type="application/json; charset=utf-8",
            name="cass_429",
            **match,
        )

    @classmethod
    def cass_500_search(cls, **match: Any) -> Fault:
        """The text CaSS sends when Elasticsearch returned nothing."""
        return cls.http_status(500, UNKNOWN_SEARCH_ERROR, name="cass_500_search", **match)

    @classmethod
    def proxy(cls, status: int = 502, **match: Any) -> Fault:
        """An nginx-style HTML error page (502/503/504)."""
        reason = {502: "Bad Gateway", 503: "Service Temporarily Unavailable"}.get(
            status, "Gateway Time-out"
        )
        body = (
            f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n"
        )
        return cls.http_status(
            status, body, content_type="text/html", name=f"proxy_{status}", **match
        )

    @classmethod
    def reset(cls, after_bytes: int | None = None, **match: Any) -> Fault:
        """Reset the connection (before the answer, or after *after_bytes* of body)."""
        return cls("reset", after_bytes=after_bytes, **match)

    @classmethod
    def truncate(cls, after_bytes: int = 10, **match: Any) -> Fault:
        """Announce the full Content-Length but send only *after_bytes*, then close."""
        return cls("truncate", after_bytes=after_bytes, **match)

    @classmethod
    def slow_body(cls, bytes_per_s: float = 200.0, **match: Any) -> Fault:
        """Send the headers at once, then drip the body."""
        return cls("slow_body", bytes_per_s=bytes_per_s, **match)

    @classmethod
    def bad_json(cls, **match: Any) -> Fault:
        """A 200 whose body is an HTML page, not JSON."""
        return cls("bad_json", **match)

    @classmethod
    def drop_results(cls, keep: int = 0, **match: Any) -> Fault:
        """A short search page (only *keep* items), as permission filtering produces."""
        return cls("drop_results", keep=keep, route=match.pop("route", "search"), **match)

    # matching -----------------------------------------------------------------------

    def _applies(self, method: str, path: str, route: str) -> bool:
        if self.route != "*" and self.route != route:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return not (self.path_regex is not None and not re.search(self.path_regex, path))

    def _fires(self, rng: random.Random, commit: bool = True) -> bool:
        self.seen += 1
        drawn = rng.random() if self.probability is not None else 0.0
        if self.times is not None and self.fired >= self.times:
            return False
        if self.nth is not None and self.seen != self.nth:
            return False
        if self.every is not None and self.seen % self.every:
            return False
        if self.probability is not None and drawn >= self.probability:
            return False
        if not commit:
            return False
        self.fired += 1
        return True


@dataclass
class JournalEntry:
    """One request as the double saw it (no secrets: sheets are summarised)."""

    t: float  # time.monotonic() at arrival
    method: str
    path: str
    route: str
    query: dict[str, str] = field(default_factory=dict)
    form: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # search parameters, parsed
    sheet_owners: list[str] = field(default_factory=list)  # md5 of each owner PEM
    faults: list[str] = field(default_factory=list)
    status: int | None = None
    results: int | None = None  # items in a search/multiGet answer
    done: float | None = None  # the clock just before the answer's first byte (None: none)


@dataclass
class _Request:
    """Internal: a routed request, as the route handlers read it."""

    rest: str  # the path after the route (the search kind, the object's id)
    query: Mapping[str, str]
    form: Mapping[str, str]
    sheet: frozenset[str]  # the PEMs it may read as
    entry: JournalEntry
    keep: int | None  # a drop_results fault: answer at most this many results


class _Reply(Exception):
    """Internal: answer now with this status, body and content type."""

    def __init__(
        self,
        status: int,
        body: str | bytes,
        content_type: str = "text/plain; charset=utf-8",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.content_type = content_type
        self.headers = dict(headers or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Reply, (self.status, self.body, self.content_type, self.headers))


# -- the store -------------------------------------------------------------------------


@dataclass(slots=True)
class _Doc:
    seq: int
    guid: str
    short_id: str
    at_id: str
    version: int
    index: str
    obj: dict[str, Any]


def _dotted_type(obj: Mapping[str, Any]) -> str:
    """CaSS's dotted type, e.g. ``schema.cassproject.org.0.4.Assertion``."""
    t = obj.get("@type")
    t = t[0] if isinstance(t, list) and t else t
    t = t if isinstance(t, str) else "Thing"
    if "://" not in t:
        ctx = obj.get("@context")
        ctx = ctx if isinstance(ctx, str) else "http://schema.org/"
        t = ctx.rstrip("/") + "/" + t
    t = t.split("://", 1)[1]
    return t.replace("/", ".")


def _split_id(at_id: str) -> tuple[str, str, int | None]:
    """(short id, guid, version) of an ``@id`` URL."""
    parts = at_id.rstrip("/").split("/")
    version = None
    if len(parts) > 2 and parts[-1].isdigit() and len(parts[-1]) >= 10:
        version = int(parts[-1])
        parts = parts[:-1]
    return "/".join(parts), parts[-1], version


class _Store:
    """Objects with exact-value, word, type and field indexes, for fast searches."""

    def __init__(self) -> None:
        self.docs: list[_Doc | None] = []
        self.by_guid: dict[str, int] = {}
        self.by_md5: dict[str, int] = {}
        self.exact: dict[str, list[int]] = {}
        self.words: dict[str, list[int]] = {}
        self.types: dict[str, list[int]] = {}
        self.fields: dict[str, list[int]] = {}
        self._analyzed: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.next_version = int(time.time() * 1000)

    def put(self, obj: dict[str, Any]) -> _Doc:
        at_id = obj.get("@id")
        if not isinstance(at_id, str) or not at_id:
            raise ValueError("a CaSS object needs an '@id'")
        short_id, guid, version = _split_id(at_id)
        if version is None:
            self.next_version += 1
            version = self.next_version
        old = self.by_guid.get(guid)
        if old is not None:
            self.docs[old] = None
        seq = len(self.docs)
        doc = _Doc(seq, guid, short_id, at_id, version, _dotted_type(obj).lower(), obj)
        self.docs.append(doc)
        self.by_guid[guid] = seq
        self.by_md5[hashlib.md5(short_id.encode("utf-8")).hexdigest()] = seq
        seen_exact: set[str] = set()
        seen_words: set[str] = set()
        for _path, scalar in walk(obj):
            value = _text(scalar)
            if value is None:
                continue
            analyzed = self._analyzed.get(value)
            if analyzed is None:
                # Shared by every object holding the same value (PEMs, URLs, types):
                # one folded copy, not one per object.
                words = () if is_whole_only(value) else tuple(tokens(value))
                analyzed = self._analyzed[value] = (fold(value), words)
            key, words = analyzed
            if key not in seen_exact:
                seen_exact.add(key)
                self.exact.setdefault(key, []).append(seq)
            for w in words:
                if w not in seen_words:
                    seen_words.add(w)
                    self.words.setdefault(w, []).append(seq)
        for t in short_types(obj):
            self.types.setdefault(t, []).append(seq)
        for name in obj:
            self.fields.setdefault(name, []).append(seq)
        return doc

    def get(self, uid: str, version: int | None = None) -> _Doc | None:
        seq = self.by_guid.get(uid)
        if seq is None:
            seq = self.by_md5.get(uid)
        doc = self.docs[seq] if seq is not None else None
        if doc is None or (version is not None and doc.version != version):
            return None
        return doc

    def live(self, seqs: Iterable[int]) -> set[int]:
        return {s for s in seqs if self.docs[s] is not None}

    def candidates(self, node: Any) -> tuple[set[int] | None, bool]:
        """A superset of the matching docs (None = all) and whether it is exact."""
        kind = node.kind
        if kind == "all":
            return None, True
        if kind == "type":
            return set(self.types.get(node.value, ())), True
        if kind == "exists" and "." not in node.field and node.field != "@version":
            return set(self.fields.get(node.field, ())), True
        if kind == "text":
            found = set(self.exact.get(fold(node.value), ()))
            words = tokens(node.value)
            if words:
                postings = [self.words.get(w, []) for w in words]
                postings.sort(key=len)
                common = set(postings[0])
                for p in postings[1:]:
                    common.intersection_update(p)
                found |= common
            return found, False
        if kind == "and":
            result: set[int] | None = None
            exact = True
            for child in sorted(node.children, key=lambda c: c.kind not in ("text", "type")):
                cands, child_exact = self.candidates(child)
                exact = exact and child_exact
                if cands is not None:
                    result = cands if result is None else result & cands
            return result, exact
        if kind == "or":
            union: set[int] = set()
            exact = True
            for child in node.children:
                cands, child_exact = self.candidates(child)
                if cands is None:
                    return None, False
                union |= cands
                exact = exact and child_exact
            return union, exact
        return None, False

    def search(self, node: Any, index_hint: str | None) -> list[_Doc]:
        cands, exact = self.candidates(node)
        pool = self.docs if cands is None else [self.docs[s] for s in sorted(cands)]
        patterns = [
            p.strip().lower()
            for p in (index_hint or "").split(",")
            if p.strip() and not p.strip().startswith("-") and p.strip() != "permanent"
        ]
        out = []
        for doc in pool:
            if doc is None:
                continue
            if patterns and not any(fnmatchcase(doc.index, p) for p in patterns):
                continue
            if (exact and cands is not None) or node.matches(doc.obj, doc.version):
                out.append(doc)
        return out


# -- KBAC ------------------------------------------------------------------------------


def _pems(value: Mapping[str, Any], name: str) -> list[str]:
    out: list[str] = []
    for key in (name, "@" + name):
        v = value.get(key)
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            out.extend(x for x in v if isinstance(x, str))
    return out


def _restricted(value: Mapping[str, Any]) -> bool:
    return value.get("@type") == "EncryptedValue" or bool(_pems(value, "reader"))


def _strip(value: Any, sheet: frozenset[str]) -> Any:
    """*value* without the parts the sheet's owners may not read (None = all of it)."""
    if isinstance(value, dict):
        if _restricted(value) and not sheet.intersection(
            _norm(p) for p in _pems(value, "owner") + _pems(value, "reader")
        ):
            return None
        out = {}
        for k, v in value.items():
            s = _strip(v, sheet)
            if s is not None and not (s == [] and v != []):  # a list emptied goes too
                out[k] = s
        return out
    if isinstance(value, list):
        return [s for s in (_strip(v, sheet) for v in value) if s is not None]
    return value


def _norm(pem: str) -> str:
    return "".join(pem.split())


def _pem_digest(pem: str) -> str:
    return hashlib.md5(_norm(pem).encode("utf-8")).hexdigest()[:16]


# -- the server ------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, default=_json_default, ensure_ascii=False).encode("utf-8")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, double: CassDouble) -> None:
        self.double = double
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or go away are part of the tests: stay quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle and
        # delayed ACKs add ~40 ms to every answer.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.server.conn_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.double._handle(self)

    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET


class CassDouble:
    """A CaSS server double on ``127.0.0.1`` (port chosen by the OS).

    ``kbac`` is ``"strip"`` (default, the real behaviour), ``"off"`` or ``"strict"``.
    ``chaos=True`` shuffles results whose order the query does not fix. ``latency_s``
    delays every answer (for benchmarks). ``server_rate=(rate_per_s, burst)`` enables a
    token-bucket rate limit answered with CaSS's 429. ``window`` is the result window.
    """

    def __init__(
        self,
        *,
        kbac: str = "strip",
        chaos: bool = False,
        seed: int = 0,
        latency_s: float = 0.0,
        server_rate: tuple[float, int] | None = None,
        window: int = RESULT_WINDOW,
        prefix: str = "",
        strict_json_post: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        if kbac not in ("strip", "off", "strict"):
            raise ValueError(f"kbac must be 'strip', 'off' or 'strict', got {kbac!r}")
        self.kbac = kbac
        self.chaos = chaos
        self.latency_s = latency_s
        self.window = window
        self.strict_json_post = strict_json_post
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self._clock = clock
        self._wallclock = wallclock
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._store = _Store()
        self._faults: list[Fault] = []
        self.journal: list[JournalEntry] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bucket: list[float] | None = None
        self.server_rate = server_rate
        if server_rate is not None:
            self._bucket = [float(server_rate[1]), clock()]
        self._verified: dict[str, int] = {}
        self.engine_key: Any = None  # set by from_evidence when an EngineKey was given
        self.fixtures: Any = None
        self._server = _Server(self)
        self.port = self._server.server_address[1]

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API base, ``http://127.0.0.1:<port>[/prefix]/api/``."""
        return f"http://127.0.0.1:{self.port}{self.prefix}/api/"

    @property
    def source_uri(self) -> str:
        """A ``cass+http://`` URI for :class:`~ceredis.sources.cass.CassSource`,
        naming the loaded framework when fixtures were built."""
        uri = f"cass+http://127.0.0.1:{self.port}{self.prefix}/"
        if self.fixtures is not None:
            uri += f"?framework={self.fixtures.framework_guid}"
        return uri

    def source_env(self, key_path: str | Path | None = None) -> dict[str, str]:
        """Environment for the source: writes the engine key to *key_path* (mode 0600)
        and returns ``{"CEREDIS_CASS_KEY": key_path}`` (``{}`` without a key)."""
        if key_path is None or self.engine_key is None:
            return {}
        path = Path(key_path)
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(self.engine_key.private_pem(), encoding="ascii")
        return {"CEREDIS_CASS_KEY": str(path)}

    def start(self) -> CassDouble:
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"cass-double:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, abort hanging answers and close every connection."""
        self._stop.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        with self._server.conn_lock:
            conns = list(self._server.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            with self._server.conn_lock:
                if not self._server.connections:
                    break
            time.sleep(0.01)

    def __enter__(self) -> CassDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- content -----------------------------------------------------------------------

    def put(self, *objects: Mapping[str, Any]) -> None:
        """Load JSON-LD objects (a newer object with the same GUID replaces the old).

        Objects are kept by reference (big fixtures stay small): do not mutate them
        afterwards; put a modified copy instead.
        """
        with self._lock:
            for obj in objects:
                self._store.put(obj if isinstance(obj, dict) else dict(obj))

    def load_files(self, *paths: str | Path) -> None:
        """Load JSON-LD objects (one object or a list per file)."""
        for p in paths:
            data = json.loads(Path(p).read_text(encoding="utf-8"), parse_float=Decimal)
            self.put(*(data if isinstance(data, list) else [data]))

    def objects(self) -> list[dict[str, Any]]:
        """Every stored object (latest versions), in store order."""
        with self._lock:
            return [d.obj for d in self._store.docs if d is not None]

    @classmethod
    def from_evidence(
        cls,
        records: Iterable[Mapping[str, Any]],
        *,
        competencies: Mapping[str, str] | None = None,
        engine_key: Any = None,
        encrypted: bool | None = None,
        seed: int = 0,
        **options: Any,
    ) -> CassDouble:
        """A double loaded with *records* (scoring.md §1 dicts) as CaSS objects.

        *competencies* maps ``X.Y`` to the referential's CaSS UUIDs. *engine_key* is
        an :class:`~ceredis.sources.kbac.EngineKey` (or a public PEM): the engine is
        a reader of every encrypted field. ``encrypted`` defaults to True when a key
        is given; plain fixtures suit large benchmarks. Other options go to the
        constructor. See :mod:`doubles.cass_fixtures` for the mapping.
        """
        from doubles.cass_fixtures import build_fixtures

        double = cls(seed=seed, **options)
        engine_pem = None
        if engine_key is not None:
            if isinstance(engine_key, str):
                engine_pem = engine_key
            else:
                engine_pem = engine_key.public_pem
                double.engine_key = engine_key
        if encrypted is None:
            encrypted = engine_pem is not None
        try:
            fixtures = build_fixtures(
                records,
                id_base=double.base_url,
                competencies=competencies,
                engine_pem=engine_pem,
                encrypted=encrypted,
                seed=seed,
            )
        except BaseException:
            double.stop()
            raise
        double.fixtures = fixtures
        double.put(*fixtures.objects)
        return double

    # -- faults and journal ------------------------------------------------------------

    def add_fault(self, *faults: Fault) -> None:
        """Append fault rules (evaluated in order for every request)."""
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        with self._lock:
            self._faults.clear()

    def most_in_flight(self) -> int:
        """The most requests the double was handling at once (answered ones, by their
        arrival and answer times)."""
        with self._lock:
            spans = [(e.t, e.done) for e in self.journal if e.done is not None]
        edges = sorted([(t, 1) for t, _ in spans] + [(d, -1) for _, d in spans])
        most = current = 0
        for _, step in edges:  # at equal times an answer (-1) sorts before an arrival
            current += step
            most = max(most, current)
        return most

    def clear_journal(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self.journal.clear()

    def requests(self, route: str | None = None) -> list[JournalEntry]:
        """Journal entries, optionally for one route."""
        with self._lock:
            return [e for e in self.journal if route is None or e.route == route]

    # -- request handling --------------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        entry, query, body = self._receive(h)
        try:
            form = self._parse_form(h.command, h.headers.get("Content-Type", ""), body)
            route, rest = self._route(entry.path, h.command, query, form)
        except _Reply as reply:
            self._send(h, entry, reply, None)
            return
        entry.route = route
        entry.form = _safe_fields(form)
        if route == "search":
            with contextlib.suppress(_Reply):  # answered (and journaled) below
                entry.params = self._search_params(rest, query, form)
        limited, action, delay = self._pick_faults(h.command, route, entry)
        if limited is not None:
            entry.faults.append("server_rate_limit")
            self._send(h, entry, limited, None)
            return
        if delay > 0 and self._stop.wait(delay):
            entry.status = None
            h.close_connection = True
            return
        if action is not None and action.action == "reset" and action.after_bytes is None:
            entry.status = 0
            _reset(h)
            return
        sheet_text = form.get("signatureSheet") or h.headers.get("signatureSheet")
        request = _Request(rest, query, form, frozenset(), entry, None)
        self._send(h, entry, self._answer(route, request, sheet_text, action), action)

    def _receive(self, h: _Handler) -> tuple[JournalEntry, dict[str, str], bytes]:
        """Journal the request's arrival; its entry, query fields and body."""
        arrival = self._clock()
        split = urllib.parse.urlsplit(h.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query, True).items()}
        entry = JournalEntry(arrival, h.command, split.path, "other", query=_safe_fields(query))
        with self._lock:
            self.journal.append(entry)
        try:
            length = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = h.rfile.read(length) if length > 0 else b""
        return entry, query, body

    def _pick_faults(
        self, method: str, route: str, entry: JournalEntry
    ) -> tuple[_Reply | None, Fault | None, float]:
        """The server's rate-limit reply (if any), the fault acting, and the delay."""
        action: Fault | None = None
        delay = self.latency_s
        with self._lock:
            limited = self._take_token()
            if limited is None:
                for rule in self._faults:
                    if not rule._applies(method, entry.path, route):
                        continue
                    # Every rule counts every request it applies to (nth/every), but a
                    # request gets one action: later rules keep their firings (times).
                    if rule._fires(self._rng, commit=action is None or rule.action == "latency"):
                        entry.faults.append(rule.name)
                        if rule.action == "latency":
                            delay += rule.delay_s + self._rng.uniform(0, rule.jitter_s)
                        elif action is None:
                            action = rule
                            if rule.action == "hang":
                                delay += rule.delay_s
        return limited, action, delay

    def _answer(
        self, route: str, request: _Request, sheet_text: str | None, action: Fault | None
    ) -> _Reply:
        """The fault's own reply (status, not JSON), else the route's, as read with the sheet."""
        if action is not None and action.action == "status":
            return _Reply(action.status, action.body, action.content_type, action.headers)
        if action is not None and action.action == "bad_json":
            return _Reply(200, "<html><body><h1>Welcome to nginx!</h1></body></html>", "text/html")
        if action is not None and action.action == "drop_results":
            request.keep = action.keep
        try:
            request.sheet = self._sheet(sheet_text, request.entry)
            return self._dispatch(route, request)
        except _Reply as reply:
            return reply

    def _take_token(self) -> _Reply | None:
        if self._bucket is None or self.server_rate is None:
            return None
        rate, burst = self.server_rate
        now = self._clock()
        tokens_now = min(float(burst), self._bucket[0] + (now - self._bucket[1]) * rate)
        self._bucket[1] = now
        if tokens_now >= 1:
            self._bucket[0] = tokens_now - 1
            return None
        self._bucket[0] = tokens_now
        wait = max(1, math.ceil((1 - tokens_now) / rate))
        return _Reply(
            429,
            RATE_LIMIT_BODY,
            "application/json; charset=utf-8",
            {
                "Retry-After": str(wait),
                "RateLimit-Policy": f"{burst};w={max(1, round(burst / rate))}",
                "RateLimit-Limit": str(burst),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(wait),
            },
        )

    def _send(self, h: _Handler, entry: JournalEntry, reply: _Reply, action: Fault | None) -> None:
        entry.done = self._clock()  # before any byte: the client is still waiting for it
        entry.status = reply.status
        body = reply.body
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", reply.content_type)
            h.send_header("Content-Length", str(len(body)))
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            kind = action.action if action is not None else None
            if kind == "truncate":
                h.wfile.write(body[: action.after_bytes or 0])  # type: ignore[union-attr]
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_WR)
            elif kind == "reset":
                h.wfile.write(body[: action.after_bytes or 0])  # type: ignore[union-attr]
                h.wfile.flush()
                _reset(h)
            elif kind == "slow_body":
                step = max(1, int(action.bytes_per_s / 20))  # type: ignore[union-attr]
                for i in range(0, len(body), step):
                    h.wfile.write(body[i : i + step])
                    h.wfile.flush()
                    if self._stop.wait(step / action.bytes_per_s):  # type: ignore[union-attr]
                        h.close_connection = True
                        return
            else:
                h.wfile.write(body)
        except OSError:
            h.close_connection = True

    def _parse_form(self, method: str, ctype: str, body: bytes) -> dict[str, str]:
        if method != "POST" or (not body and "multipart" not in ctype):
            return {}
        mime = ctype.split(";", 1)[0].strip().lower()
        if mime == "application/x-www-form-urlencoded":
            pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            return dict(pairs)  # busboy keeps the last value of a repeated field
        if mime == "multipart/form-data":
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode("latin-1") + body
            )
            out: dict[str, str] = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name:
                    payload = part.get_payload(decode=True) or b""
                    out[str(name)] = payload.decode("utf-8", "replace")
            return out
        if mime == "application/json":
            if self.strict_json_post:
                raise _Reply(
                    400,
                    "CaSS double: POST with Content-Type application/json. The real CaSS "
                    "routes such a request to its PUT handler and ignores the body; send "
                    "searchParams/signatureSheet as form fields (urlencoded or multipart).",
                )
            return {"__json_body__": "1"}
        return {}

    def _route(
        self, path: str, method: str, query: Mapping[str, str], form: Mapping[str, str]
    ) -> tuple[str, str]:
        api = f"{self.prefix}/api/"
        if not path.startswith(api):
            raise _Reply(404, f"Cannot {method} {path}", "text/html; charset=utf-8")
        rest = path[len(api) :]
        if rest == "ping":
            return "ping", ""
        if rest in ("sky/repo/search", "sky/repo/search/"):
            return "search", "sky"
        if rest in ("sky/repo/multiGet", "sky/repo/multiget"):
            return "multiget", ""
        if rest in ("data", "data/"):
            return "search", "data"
        if rest.startswith("data/"):
            if "data" in form:
                raise _Reply(501, "CaSS double: saving objects is not supported (read-only)")
            return "get", rest[len("data/") :]
        raise _Reply(404, f"Cannot {method} {path}", "text/html; charset=utf-8")

    def _sheet(self, text: str | None, entry: JournalEntry) -> frozenset[str]:
        """The PEMs the request may read as (after verification in strict mode)."""
        if not text:
            return frozenset()
        try:
            sheet = json.loads(text)
            if not isinstance(sheet, list):
                raise ValueError
        except ValueError:
            if self.kbac == "strict":
                raise _Reply(496, "Missing or Malformed Signature.") from None
            return frozenset()
        owners = []
        for item in sheet:
            if not isinstance(item, dict):
                continue
            owner = item.get("@owner", item.get("owner"))
            if not isinstance(owner, str):
                continue
            if self.kbac == "strict":
                self._verify(item)
            owners.append(_norm(owner))
        entry.sheet_owners = [_pem_digest(p) for p in owners]
        return frozenset(owners)

    def _verify(self, item: Mapping[str, Any]) -> None:
        from ceredis.sources import kbac
        from doubles.kbac import verify_entry

        if item.get("@type", item.get("type")) != kbac.SIGNATURE_TYPE:
            raise _Reply(422, "Invalid Signature Version.")
        expiry = item.get("expiry")
        if not isinstance(expiry, int):
            raise _Reply(422, "Missing expiry date.")
        now_ms = int(self._wallclock() * 1000)
        if expiry < now_ms:
            raise _Reply(419, f"A Signature is Expired. My time is {now_ms}")
        sig = str(item.get("@signatureSha256", item.get("@signature", "")))
        cache_key = sig + kbac.signed_message(item).decode("utf-8")
        ok = self._verified.get(cache_key)
        if ok is None:
            ok = 1 if verify_entry(item) else 0
            self._verified[cache_key] = ok
        if not ok:
            raise _Reply(451, "Invalid Signature Detected: " + str(item.get("@owner", ""))[:80])

    def _visible(self, obj: dict[str, Any], sheet: frozenset[str]) -> dict[str, Any] | None:
        if self.kbac == "off":
            return obj
        return _strip(obj, sheet)

    def _dispatch(self, route: str, request: _Request) -> _Reply:
        if route == "ping":
            return _Reply(
                200,
                _dumps(
                    {
                        "ping": "pong",
                        "version": "1.7.4",
                        "time": int(self._wallclock() * 1000),
                        "adminPublicKeys": [],
                        "postMaxSize": 52428800,
                        "signatureSheetHashAlgorithm": "SHA-256",
                        "fips": 0,
                    }
                ),
                "application/json; charset=utf-8",
            )
        if route == "search":
            return self._search(request)
        if route == "get":
            return self._get(request.rest, request.query, request.sheet)
        if route == "multiget":
            return self._multiget(request.form, request.sheet, request.entry)
        raise _Reply(404, "Not found")

    def _search_params(
        self, kind: str, query: Mapping[str, str], form: Mapping[str, str]
    ) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key in ("q", "start", "size", "sort", "index_hint", "ids", "track_scores"):
            if key in query:
                params[key] = query[key]
        if "searchParams" in form:
            try:
                sp = json.loads(form["searchParams"])
            except ValueError:
                raise _Reply(
                    500, f"SyntaxError: Unexpected token in JSON: {form['searchParams'][:40]}"
                ) from None
            if not isinstance(sp, dict):
                raise _Reply(500, "TypeError: searchParams must be a JSON object")
            params.update(sp)
        if kind == "sky" and form.get("data"):
            params["q"] = form["data"]
        if form.get("__json_body__"):
            params.setdefault("q", "*" if kind == "sky" else None)
            if params["q"] is None:
                raise _Reply(404, "No resource specified.")
        if kind == "sky" and not params.get("q"):
            params["q"] = "*"
        if "q" not in params:
            raise _Reply(404, "No resource specified.")
        return params

    def _search(self, request: _Request) -> _Reply:
        params = self._search_params(request.rest, request.query, request.form)
        request.entry.params = dict(params)
        q = params.get("q")
        q = "" if q is None else str(q)
        start, size = self._page_window(params)
        sort = self._parse_sort(params.get("sort"))
        try:
            node = parse_query(q)
        except QuerySyntaxError as exc:
            raise _Reply(
                400, f"[query_shard_exception] Failed to parse query [{q}]: {exc}"
            ) from None
        with self._lock:
            hits = self._store.search(node, params.get("index_hint"))
            self._order(hits, sort)
            page = self._page(hits, request.sheet, start, size)
        if request.keep is not None:
            page = page[: request.keep]
        request.entry.results = len(page)
        if str(params.get("ids", "")).lower() == "true":
            body = _dumps([o.get("@id") for o in page])
        else:
            body = _dumps(page)
        return _Reply(200, body, "application/json; charset=utf-8")

    def _page_window(self, params: Mapping[str, Any]) -> tuple[int, int]:
        """A search's ``start`` and ``size``, refused as Elasticsearch refuses them."""
        try:
            start = int(params.get("start", 0) or 0)
            size = int(params.get("size", 50) if params.get("size") is not None else 50)
        except (TypeError, ValueError):
            raise _Reply(400, "[parse_exception] failed to parse [from] or [size]") from None
        if start < 0 or size < 0:
            raise _Reply(400, "[from] parameter cannot be negative")
        if start + size > self.window:
            raise _Reply(
                400,
                f"Result window is too large, from + size must be less than or equal to: "
                f"[{self.window}] but was [{start + size}]. See the scroll api for a more "
                f"efficient way to request large data sets. This limit can be set by "
                f"changing the [index.max_result_window] index level setting.",
            )
        return start, size

    def _page(
        self, hits: list[_Doc], sheet: frozenset[str], start: int, size: int
    ) -> list[dict[str, Any]]:
        """The visible hits from *start*, at most *size* (call with the lock held)."""
        page: list[dict[str, Any]] = []
        pos = start
        end = start + size
        while pos < min(end, len(hits)):
            visible = self._visible(hits[pos].obj, sheet)
            if visible is not None:
                page.append(visible)
            pos += 1
            # Auto-extend (cass-api.md §1.2): a page emptied by the permission
            # filter reaches further, so an empty page really means the end.
            if pos == end and not page and size > 0:
                end = min(len(hits), self.window)
        return page

    def _parse_sort(self, sort: Any) -> list[tuple[str, bool, bool]]:
        if sort is None or sort == "":
            return []
        if not isinstance(sort, str):
            raise _Reply(400, "sort must be a JSON string (the server calls JSON.parse(sort))")
        try:
            spec = json.loads(sort)
        except ValueError:
            raise _Reply(400, f"SyntaxError: sort is not JSON: {sort[:60]}") from None
        spec = spec if isinstance(spec, list) else [spec]
        out = []
        for item in spec:
            if isinstance(item, str):
                out.append((item.removesuffix(".keyword"), False, True))
                continue
            if not isinstance(item, dict) or len(item) != 1:
                raise _Reply(400, f"[parsing_exception] malformed sort: {json.dumps(item)[:80]}")
            ((fname, opts),) = item.items()
            opts = opts if isinstance(opts, dict) else {"order": opts}
            order = str(opts.get("order", "asc")).lower()
            if order not in ("asc", "desc"):
                raise _Reply(400, f"[parsing_exception] unknown sort order {order!r}")
            missing_first = opts.get("missing") == "_first"
            out.append((fname.removesuffix(".keyword"), order == "desc", missing_first))
        return out

    def _order(self, hits: list[_Doc], sort: list[tuple[str, bool, bool]]) -> None:
        hits.sort(key=lambda d: (d.version, d.at_id))
        if self.chaos:
            # Elasticsearch relevance order is not stable between calls.
            self._rng.shuffle(hits)
        for fname, desc, missing_first in reversed(sort):

            def value(d: _Doc, fname: str = fname) -> Any:
                if fname == "@version":
                    return d.version
                v: Any = d.obj
                for part in fname.split("."):
                    v = v.get(part) if isinstance(v, dict) else None
                if isinstance(v, list):
                    v = v[0] if v else None
                return v

            present = [d for d in hits if value(d) is not None]
            absent = [d for d in hits if value(d) is None]
            present.sort(key=lambda d: _sort_key(value(d)), reverse=desc)
            hits[:] = absent + present if missing_first else present + absent

    def _get(self, rest: str, query: Mapping[str, str], sheet: frozenset[str]) -> _Reply:
        parts = [p for p in rest.split("/") if p]
        if "q" in query and len(parts) == 1:
            raise _Reply(500, UNKNOWN_SEARCH_ERROR)  # /api/data/{index}?q= is broken in 1.7.4
        if not parts:
            raise _Reply(404, "No resource specified.")
        version = _pop_version(parts)
        uid = parts[-1]
        with self._lock:
            doc = self._store.get(uid, version)
            visible = self._visible(doc.obj, sheet) if doc is not None else None
        if visible is None:
            raise _Reply(404, OBJECT_NOT_FOUND)
        if query.get("history") == "true":
            return _Reply(200, _dumps([visible]), "application/json; charset=utf-8")
        return _Reply(200, _dumps(visible), "application/json; charset=utf-8")

    def _multiget(
        self, form: Mapping[str, str], sheet: frozenset[str], entry: JournalEntry
    ) -> _Reply:
        try:
            wanted = json.loads(form.get("data", "[]"))
            if not isinstance(wanted, list):
                raise ValueError
        except ValueError:
            raise _Reply(400, "multiGet: data must be a JSON array of 'data/…' strings") from None
        out = []
        with self._lock:
            for item in wanted:
                if not isinstance(item, str):
                    continue
                parts = [p for p in item.split("/") if p]
                if parts and parts[0] == "data":
                    parts = parts[1:]
                if not parts:
                    continue
                version = _pop_version(parts)
                uid = parts[-1]
                doc = self._store.get(uid, version)
                if doc is None:
                    continue
                visible = self._visible(doc.obj, sheet)
                if visible is not None:
                    out.append(visible)
            if self.chaos:
                self._rng.shuffle(out)
        entry.results = len(out)
        return _Reply(200, _dumps(out), "application/json; charset=utf-8")


def _pop_version(parts: list[str]) -> int | None:
    """Remove and return a trailing ``/<ms version>`` segment, if any."""
    if len(parts) >= 2 and parts[-1].isdigit() and len(parts[-1]) >= 10:
        return int(parts.pop())
    return None


def _text(value: Any) -> str | None:
    """The text a scalar is searched by (as in cass_query)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        return str(value)
    return None


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float | Decimal):
        return (0, Decimal(str(value)))
    return (1, str(value))


def _reset(h: _Handler) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0)."""
    h.close_connection = True
    try:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()  # the descriptor closes (RST) once the handler's files close
    except OSError:
        pass


def _safe_fields(fields: Mapping[str, str]) -> dict[str, Any]:
    """Form or query fields for the journal: signature sheets summarised, never kept."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if k.lower() == "signaturesheet":
            try:
                n = len(json.loads(v))
            except (ValueError, TypeError):
                n = -1
            out[k] = f"<signature sheet: {n} entries>"
        elif k == "searchParams":
            try:
                out[k] = json.loads(v)
            except ValueError:
                out[k] = v[:200]
        elif k == "__json_body__":
            continue
        else:
            out[k] = v if len(v) <= 2000 else v[:2000] + "…"
    return out
