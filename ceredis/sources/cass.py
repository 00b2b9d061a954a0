"""The CaSS evidence source: a learner's Assertions read from a CaSS repository.

URI: ``cass+https://host[:port][/prefix]/[?framework=<guid|url>&page_size=100]``
(``cass+http://`` for local tests); the API base is ``{scheme}://host[:port][/prefix]/api/``.
Settings (docs/cass.md; :class:`~ceredis.config.CassSettings`): the engine's private
key (``CEREDIS_CASS_KEY``, a secret: without it reads are anonymous and CaSS removes
every encrypted field), the framework used to partition big result sets and checked by
:meth:`CassSource.ping` (``CEREDIS_CASS_FRAMEWORK``, or ``?framework=``), an
``Authorization`` header value (``CEREDIS_CASS_AUTHORIZATION``, a secret), the Person
property holding the learner id, the page size and the result window; and the HTTP
settings and shared rate limit of every remote source.

Reading one learner: find the ``schema.org/Person`` whose ``identifier`` is the agent
id and take its key (``owner[0]``); search every Assertion mentioning that key
(``"<PEM>"``, ``index_hint=*assertion``), paging with a stable sort until an empty
page (a short page is not the end: permission filtering shortens pages), splitting the
query by competency chunks when it would pass the 10,000-result window; decrypt
``subject`` and keep only the learner's own assertions; map each to an evidence record
(:func:`~ceredis.sources.cass_mapping.assertion_to_evidence`). An assertion whose
evidence cannot be read becomes an invalid record naming the assertion, so the learner
gets ERROR, never a silent gap.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ceredis.config import CassSettings, Settings, whole_number
from ceredis.errors import ConfigError, SourceError
from ceredis.evidence import RawEvidence
from ceredis.sources import kbac
from ceredis.sources.cass_mapping import (
    AssertionReader,
    assertion_to_evidence,
    is_assertion,
    ms_to_iso,
    short_id,
    version,
)
from ceredis.sources.http import HttpClient, parse_json
from ceredis.sources.ratelimit import RateLimiter
from ceredis.sources.remote import RemoteSource, http_client
from ceredis.sources.uri import parse_source_uri

__all__ = [
    "ENV_FRAMEWORK",
    "ENV_KEY",
    "CassConfig",
    "CassSource",
    "check_uri",
    "ms_to_iso",
    "parse_uri",
]

ENV_KEY = "CEREDIS_CASS_KEY"
ENV_FRAMEWORK = "CEREDIS_CASS_FRAMEWORK"
ENV_AUTHORIZATION = "CEREDIS_CASS_AUTHORIZATION"

DEFAULT_PAGE_SIZE = 100
DEFAULT_WINDOW = 10_000
DEFAULT_AGENT_FIELD = "identifier"
#: Competencies per query when a learner's assertions must be partitioned (as the
#: official profile code does).
COMPETENCY_CHUNK = 10
#: Page size when listing learners (Persons are small; CaSS allows up to 10,000).
AGENTS_PAGE_SIZE = 1000
#: A stable order for paging: index version, then id (both with unmapped types so an
#: index without the field does not fail).
SORT = json.dumps(
    [
        {"@version": {"order": "asc", "unmapped_type": "long"}},
        {"@id.keyword": {"order": "asc", "unmapped_type": "keyword"}},
    ],
    separators=(",", ":"),
)

_URI_PARAMS = ("framework", "page_size", "agent_field", "window")
_GUID_RE = re.compile(r"[A-Za-z0-9._~-]+")
_FIELD_RE = re.compile(r"[A-Za-z_@][A-Za-z0-9_.@-]*")


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class CassConfig:
    """Everything :func:`parse_uri` read from a URI and the settings (no network)."""

    name: str
    base_url: str
    framework: str | None
    page_size: int
    window: int
    agent_field: str
    key_path: Path | None
    authorization: str | None = field(default=None, repr=False)  # a secret


def parse_uri(uri: str, settings: CassSettings) -> CassConfig:
    """Read a ``cass+http(s)://`` URI; its options win over *settings*.

    Raises :class:`~ceredis.errors.ConfigError` naming what is wrong; no network.
    """
    parsed = parse_source_uri(
        uri,
        "cass",
        "CaSS",
        _URI_PARAMS,
        f"use {ENV_AUTHORIZATION} and {ENV_KEY} in the environment",
    )
    prefix = parsed.path.rstrip("/").removesuffix("/api")
    name = parsed.display("cass", f"{prefix}/")
    query = parsed.options
    window = _option(query, "window", settings.result_window, DEFAULT_WINDOW, 1_000_000)
    page_size = _option(query, "page_size", settings.page_size, None, window)
    agent_field = query.get("agent_field") or settings.agent_field or DEFAULT_AGENT_FIELD
    if not _FIELD_RE.fullmatch(agent_field):
        raise ConfigError(f"{name}: agent_field {agent_field!r} is not a property name")
    framework = query.get("framework") or settings.framework
    if framework is not None:
        _check_framework(framework, name)
    key_path = settings.key
    if key_path is not None and not os.access(key_path, os.R_OK):
        raise ConfigError(
            f"{ENV_KEY} names {str(key_path)!r}, which is not a readable file; set it to the "
            f"path of the engine's private key (PEM)"
        )
    return CassConfig(
        name=name,
        base_url=f"{parsed.scheme}://{parsed.netloc}{prefix}/api/",
        framework=framework,
        page_size=page_size if page_size is not None else min(DEFAULT_PAGE_SIZE, window),
        window=window,
        agent_field=agent_field,
        key_path=key_path,
        authorization=settings.authorization,
    )


def _option(
    query: dict[str, str], name: str, configured: int | None, default: int | None, high: int
) -> int | None:
    """A number option: the URI's, else the configured one, else *default*; within [1, high]."""
    value = query.get(name) or configured
    return default if value is None else whole_number(value, name, 1, high)


def _check_framework(framework: str, name: str) -> None:
    fw = urllib.parse.urlsplit(framework)
    if fw.scheme in ("http", "https"):
        if not fw.path.rstrip("/").split("/")[-1]:
            raise ConfigError(f"{name}: framework URL {framework!r} has no GUID")
    elif not _GUID_RE.fullmatch(framework):
        raise ConfigError(f"{name}: framework {framework!r} is neither a GUID nor an http(s) URL")


def check_uri(uri: str, settings: Settings | None = None) -> str:
    """Validate a CaSS URI (and its settings, if given) without network; return a display
    name. The name holds no secret (``cass+https://host/prefix/``). Raises ConfigError.
    """
    return parse_uri(uri, settings.cass if settings else CassSettings()).name


# -- small helpers ---------------------------------------------------------------------


def _quote(text: str) -> str:
    """A query_string phrase: ``"…"`` with quotes and backslashes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _WindowFull(Exception):
    """Internal: a query reached the result window with more results possible."""


# -- the source ------------------------------------------------------------------------


class CassSource(RemoteSource):
    """Evidence records from a CaSS repository; one instance per worker process."""

    def __init__(self, config: CassConfig, *, http: HttpClient, key: kbac.EngineKey | None) -> None:
        self.config = config
        self.name = config.name
        self._http = http
        self._key = key
        self._sheets = kbac.SignatureSheets(key, config.base_url)
        self._framework: dict[str, Any] | None = None
        self._reader = AssertionReader(self.name, self._decode, self._no_access_hint())

    check_uri = staticmethod(check_uri)

    @classmethod
    def from_uri(
        cls, uri: str, *, settings: Settings, limiter: RateLimiter | None = None
    ) -> CassSource:
        """Open a source (no network yet). Call this in the worker, not before fork.

        *limiter* is the limiter shared by all workers (made in the parent); without
        one, a limiter local to this process is built from the rate settings.
        """
        config = parse_uri(uri, settings.cass)
        key = kbac.EngineKey.from_file(config.key_path) if config.key_path else None
        headers = {"Accept": "application/json"}
        if config.authorization:
            headers["Authorization"] = config.authorization
        http = http_client(config.base_url, settings, limiter, headers=headers, name=config.name)
        return cls(config, http=http, key=key)

    # -- EvidenceSource ----------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        """Check the server (and the framework, if configured); a clear error if not.

        Adopts the server clock for signature expiry, as the official client does.
        """
        try:
            info = self._http.get_json("ping")
        except SourceError as exc:
            raise type(exc)(f"cannot reach CaSS: {exc}") from None
        if not isinstance(info, dict) or info.get("ping") != "pong":
            raise SourceError(
                f'{self.name}: /api/ping did not answer like CaSS (no "ping": "pong"); '
                f"check the URI prefix"
            )
        server_time = info.get("time")
        if isinstance(server_time, int) and not isinstance(server_time, bool):
            self._sheets.set_server_time(server_time)
        out = {"version": info.get("version"), "server_time": server_time}
        if self.config.framework:
            fw = self._load_framework()
            out["framework"] = fw.get("name")
            out["competencies"] = len(self._competencies())
        return out

    def fetch(self, agent_id: str) -> list[RawEvidence]:
        """Every evidence record CaSS holds for *agent_id*, in assertion order."""
        pem = self._learner_pem(agent_id)
        if pem is None:
            return []
        seen: set[str] = set()
        assertions = []
        for obj in self._assertions_about(pem):
            at_id = obj.get("@id")
            if not isinstance(at_id, str) or not is_assertion(obj):
                continue
            short, _ = short_id(at_id)
            if short in seen:
                continue  # the same assertion on two pages
            seen.add(short)
            assertions.append(obj)
        assertions.sort(key=lambda o: (version(o), o["@id"]))
        records: list[RawEvidence] = []
        delivered: set[str] = set()
        for obj in assertions:
            record = assertion_to_evidence(obj, agent_id, pem, self._reader)
            if record is None:
                continue
            fingerprint = json.dumps(dict(record.fields), sort_keys=True, default=str)
            if fingerprint in delivered:
                continue  # an exact duplicate of a record already delivered
            delivered.add(fingerprint)
            records.append(record)
        return records

    def agents(self) -> Iterator[str]:
        """Every learner id (Persons with the agent field), sorted."""
        field = self.config.agent_field
        base = f"@type:Person AND _exists_:{field}"
        ids: set[str] = set()
        floor: int | None = None
        while True:
            q = base if floor is None else f"{base} AND @version:>={floor}"
            try:
                people = self._collect(q, "*person", page_size=AGENTS_PAGE_SIZE)
                full = False
            except _WindowFull as exc:
                people = exc.args[0]
                full = True
            before = len(ids)
            for person in people:
                value = person.get(field)
                if isinstance(value, str) and value:
                    ids.add(value)
            if not full or (floor is not None and len(ids) == before):
                break  # the end, or a continuation that only found the boundary again
            # Keyset continuation past the window: restart from the last version seen.
            last = max((version(p) for p in people), default=0)
            if floor is not None and last <= floor:
                raise SourceError(
                    f"{self.name}: more than {self.config.window} Persons share the version "
                    f"{last}; cannot list them past the result window"
                )
            floor = last
        # The engine lists learners in the parent and may fork while it streams them:
        # hold no socket meanwhile (the pool is re-created lazily when needed).
        self._http.close()
        return iter(sorted(ids))

    # -- reading fields --------------------------------------------------------------

    def _decode(self, value: Any) -> Any:
        """A field's value: decrypted when it is an EncryptedValue, else as stored."""
        if kbac.is_encrypted(value):
            return kbac.decrypt_value(value, self._key)
        return value

    def _no_access_hint(self) -> str:
        if self._key is None:
            return f"No engine key is configured: set {ENV_KEY} to the engine's private key."
        return (
            f"Add the engine's key (fingerprint {self._key.fingerprint}) as a reader of "
            f"the assertions."
        )

    # -- queries -----------------------------------------------------------------------

    def _search(self, q: str, start: int, size: int, index_hint: str | None) -> list[Any]:
        params: dict[str, Any] = {"q": q, "start": start, "size": size, "sort": SORT}
        if index_hint:
            params["index_hint"] = index_hint
        for attempt in (1, 2):
            response = self._http.request(
                "POST",
                "data",
                form={"searchParams": json.dumps(params), "signatureSheet": self._sheets.sheet()},
                ok=(419,),
                decode=parse_json,
            )
            if response.status != 419:
                break
            if attempt == 2:
                raise SourceError(
                    f"{self.name}: CaSS rejects the signature sheet as expired even after "
                    f"re-signing; check this machine's clock"
                )
            self.ping()  # learn the server clock, then sign a fresh sheet
        result = response.body
        if not isinstance(result, list):
            raise SourceError(
                f"{self.name}: POST /api/data answered a JSON {type(result).__name__}, "
                f"expected an array of objects"
            )
        return [o for o in result if isinstance(o, dict)]

    def _collect(
        self, q: str, index_hint: str | None, page_size: int | None = None
    ) -> list[dict[str, Any]]:
        """Every result of *q*: pages until an empty one; raises _WindowFull(results)."""
        out: list[dict[str, Any]] = []
        start = 0
        window = self.config.window
        page = max(self.config.page_size, page_size or 0)
        while True:
            size = min(page, window - start)
            if size <= 0:
                raise _WindowFull(out)
            found = self._search(q, start, size, index_hint)
            if not found:
                return out
            out.extend(found)
            start += size

    def _learner_pem(self, agent_id: str) -> str | None:
        field = self.config.agent_field
        q = f"@type:Person AND {field}:{_quote(agent_id)}"
        people = [
            p
            for p in self._search(q, 0, 20, "*person")
            if p.get(field) == agent_id and "Person" in str(p.get("@type"))
        ]
        keys: dict[str, str] = {}
        for person in people:
            owners = kbac.owners(person)
            if not owners:
                raise SourceError(
                    f"{self.name}: Person {person.get('@id')} ({field}={agent_id!r}) has no "
                    f"owner key, so its assertions cannot be found"
                )
            try:
                pem = kbac.normalize_pem(owners[0])
            except ConfigError:
                raise SourceError(
                    f"{self.name}: Person {person.get('@id')} ({field}={agent_id!r}) has an "
                    f"owner that is not a PEM key"
                ) from None
            keys[pem] = str(person.get("@id"))
        if not keys:
            return None
        if len(keys) > 1:
            raise SourceError(
                f"{self.name}: {len(keys)} Persons with different keys have "
                f"{field}={agent_id!r} ({', '.join(sorted(keys.values()))}); "
                f"merge them or fix the {field}"
            )
        return next(iter(keys))

    def _assertions_about(self, pem: str) -> list[dict[str, Any]]:
        base = _quote(pem)
        try:
            return self._collect(base, "*assertion")
        except _WindowFull:
            pass
        competencies = self._competencies() if self.config.framework else []
        if not competencies:
            raise SourceError(
                f"{self.name}: the learner has more than {self.config.window} assertions and "
                f"no framework is configured to partition them; set {ENV_FRAMEWORK} or "
                f"?framework="
            )
        clauses = [f"competency:{_quote(c)}" for c in competencies]
        out = self._partitioned(base, clauses)
        rest = f"{base} AND NOT ({' OR '.join(clauses)})"
        try:
            out.extend(self._collect(rest, "*assertion"))
        except _WindowFull:
            raise SourceError(
                f"{self.name}: more than {self.config.window} of the learner's assertions "
                f"are about competencies outside the framework; cannot read them all"
            ) from None
        return out

    def _partitioned(self, base: str, clauses: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        chunks = [
            clauses[i : i + COMPETENCY_CHUNK] for i in range(0, len(clauses), COMPETENCY_CHUNK)
        ]
        while chunks:
            chunk = chunks.pop(0)
            try:
                out.extend(self._collect(f"{base} AND ({' OR '.join(chunk)})", "*assertion"))
            except _WindowFull:
                if len(chunk) == 1:
                    raise SourceError(
                        f"{self.name}: the learner has more than {self.config.window} "
                        f"assertions about one competency ({chunk[0].split(':', 1)[1]}); "
                        f"CaSS cannot return them all (Elasticsearch result window)"
                    ) from None
                half = len(chunk) // 2
                chunks[:0] = [chunk[:half], chunk[half:]]
        return out

    def _load_framework(self) -> dict[str, Any]:
        if self._framework is not None:
            return self._framework
        ref = self.config.framework or ""
        guid = urllib.parse.urlsplit(ref).path.rstrip("/").split("/")[-1] if "://" in ref else ref
        parts = urllib.parse.urlsplit(ref).path.rstrip("/").split("/") if "://" in ref else []
        if len(parts) >= 2 and parts[-1].isdigit() and len(parts[-1]) >= 10:
            guid = parts[-2]
        path = f"data/schema.cassproject.org.0.4.Framework/{urllib.parse.quote(guid)}"
        response = self._http.request("GET", path, ok=(404,), decode=parse_json)
        if response.status == 404 or not isinstance(response.body, dict):
            raise SourceError(
                f"{self.name}: framework {ref!r} not found (or not readable) in CaSS; "
                f"check {ENV_FRAMEWORK} / ?framework="
            )
        self._framework = response.body
        return self._framework

    def _competencies(self) -> list[str]:
        fw = self._load_framework()
        comps = fw.get("competency")
        comps = comps if isinstance(comps, list) else []
        out = []
        for c in comps:
            if isinstance(c, str) and c:
                out.append(short_id(c)[0])
        return out
