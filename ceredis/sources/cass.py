"""The CaSS evidence source: a learner's Assertions read from a CaSS repository.

URI: ``cass+https://host[:port][/prefix]/[?framework=<guid|url>&page_size=100]``
(``cass+http://`` for local tests); the API base is ``{scheme}://host[:port][/prefix]/api/``.
Configuration (docs/cass.md):

* ``CEREDIS_CASS_KEY``: path to the engine's RSA private key (PEM). Secret: never
  printed. Without it reads are anonymous and CaSS removes every encrypted field.
* ``CEREDIS_CASS_FRAMEWORK``: the framework (GUID or URL) when the URI has no
  ``?framework=``; used to partition big result sets and checked by :meth:`ping`.
* ``CEREDIS_CASS_AUTHORIZATION``: an ``Authorization`` header value (CaSS API key or
  ``Bearer …``). Secret: never printed.
* ``CEREDIS_CASS_AGENT_FIELD`` (default ``identifier``): the Person property holding
  the learner id (``L0001``); ``CEREDIS_CASS_PAGE_SIZE`` (default 100);
  ``CEREDIS_CASS_RESULT_WINDOW`` (default 10000, Elasticsearch's limit).
* The HTTP settings of :mod:`ceredis.sources.http` and the shared rate limit of
  :mod:`ceredis.sources.ratelimit` (``CEREDIS_SOURCE_*``).

Reading one learner: find the ``schema.org/Person`` whose ``identifier`` is the agent
id and take its key (``owner[0]``); search every Assertion mentioning that key
(``"<PEM>"``, ``index_hint=*assertion``), paging with a stable sort until an empty
page (a short page is not the end: permission filtering shortens pages), splitting the
query by competency chunks when it would pass the 10,000-result window; decrypt
``subject`` and keep only the learner's own assertions; map each to an evidence record
(:meth:`CassSource.to_evidence`). An assertion whose evidence cannot be read becomes an
invalid record naming the assertion, so the learner gets ERROR, never a silent gap.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ceredis.errors import ConfigError, SourceError
from ceredis.evidence import RawEvidence
from ceredis.sources import kbac
from ceredis.sources.http import HttpClient, HttpSettings, parse_json
from ceredis.sources.ratelimit import RateLimiter
from ceredis.sources.uri import parse_source_uri

__all__ = [
    "ENV_AGENT_FIELD",
    "ENV_AUTHORIZATION",
    "ENV_FRAMEWORK",
    "ENV_KEY",
    "ENV_PAGE_SIZE",
    "ENV_RESULT_WINDOW",
    "CassConfig",
    "CassSource",
    "check_uri",
    "ms_to_iso",
    "parse_uri",
]

ENV_KEY = "CEREDIS_CASS_KEY"
ENV_FRAMEWORK = "CEREDIS_CASS_FRAMEWORK"
ENV_AUTHORIZATION = "CEREDIS_CASS_AUTHORIZATION"
ENV_AGENT_FIELD = "CEREDIS_CASS_AGENT_FIELD"
ENV_PAGE_SIZE = "CEREDIS_CASS_PAGE_SIZE"
ENV_RESULT_WINDOW = "CEREDIS_CASS_RESULT_WINDOW"

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
_ASSERTION_CONTEXT_RE = re.compile(
    r"^https?://(schema\.cassproject\.org/0\.\d+|schema\.eduworks\.com/cass/0\.\d+)"
)


# -- configuration ---------------------------------------------------------------------


class CassConfig:
    """Everything :func:`parse_uri` read from a URI and the environment (no network)."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        framework: str | None,
        page_size: int,
        window: int,
        agent_field: str,
        key_path: str | None,
        authorization: str | None,
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.framework = framework
        self.page_size = page_size
        self.window = window
        self.agent_field = agent_field
        self.key_path = key_path
        self._authorization = authorization

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header value (a secret; not shown by ``repr``)."""
        return self._authorization

    def __repr__(self) -> str:
        return f"CassConfig({self.name!r}, framework={self.framework!r})"


def _int_setting(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{what}={text!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{what}={value} is out of range [{low}, {high}]")
    return value


def parse_uri(uri: str, env: Mapping[str, str] | None = None) -> CassConfig:
    """Read a ``cass+http(s)://`` URI and the ``CEREDIS_CASS_*`` environment.

    Raises :class:`~ceredis.errors.ConfigError` naming what is wrong; no network.
    """
    env = os.environ if env is None else env
    parsed = parse_source_uri(
        uri,
        "cass",
        "CaSS",
        _URI_PARAMS,
        f"use {ENV_AUTHORIZATION} and {ENV_KEY} in the environment",
    )
    prefix = parsed.path.rstrip("/").removesuffix("/api")
    name = parsed.display("cass", f"{prefix}/")
    base_url = f"{parsed.scheme}://{parsed.netloc}{prefix}/api/"
    query = parsed.options

    window_text = query.get("window") or env.get(ENV_RESULT_WINDOW, "").strip()
    window = _int_setting(window_text, "window", 1, 1_000_000) if window_text else DEFAULT_WINDOW
    page_text = query.get("page_size") or env.get(ENV_PAGE_SIZE, "").strip()
    page_size = (
        _int_setting(page_text, "page_size", 1, window)
        if page_text
        else min(DEFAULT_PAGE_SIZE, window)
    )
    agent_field = query.get("agent_field") or env.get(ENV_AGENT_FIELD, "").strip()
    agent_field = agent_field or DEFAULT_AGENT_FIELD
    if not _FIELD_RE.fullmatch(agent_field):
        raise ConfigError(f"{name}: agent_field {agent_field!r} is not a property name")

    framework = query.get("framework") or env.get(ENV_FRAMEWORK, "").strip() or None
    if framework is not None:
        fw = urllib.parse.urlsplit(framework)
        if fw.scheme in ("http", "https"):
            if not fw.path.rstrip("/").split("/")[-1]:
                raise ConfigError(f"{name}: framework URL {framework!r} has no GUID")
        elif not _GUID_RE.fullmatch(framework):
            raise ConfigError(
                f"{name}: framework {framework!r} is neither a GUID nor an http(s) URL"
            )

    key_path = env.get(ENV_KEY, "").strip() or None
    if key_path is not None and not os.access(key_path, os.R_OK):
        raise ConfigError(
            f"{ENV_KEY} names {key_path!r}, which is not a readable file; set it to the "
            f"path of the engine's private key (PEM)"
        )
    authorization = env.get(ENV_AUTHORIZATION, "").strip() or None
    return CassConfig(
        name=name,
        base_url=base_url,
        framework=framework,
        page_size=page_size,
        window=window,
        agent_field=agent_field,
        key_path=key_path,
        authorization=authorization,
    )


def check_uri(uri: str, *, env: Mapping[str, str] | None = None) -> str:
    """Validate a CaSS URI and its environment without network; return a display name.

    The name holds no secret (``cass+https://host/prefix/``). Raises ConfigError.
    """
    return parse_uri(uri, env).name


# -- small helpers ---------------------------------------------------------------------


def ms_to_iso(value: Any) -> str | None:
    """A CaSS ms epoch (number or digit string) as ISO-8601 UTC; None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not re.fullmatch(r"-?\d+(\.\d+)?", value):
            return None
        value = Decimal(value)
    if not isinstance(value, int | Decimal | float):
        return None
    try:
        ms = Decimal(str(value))
        when = datetime.fromtimestamp(float(ms / 1000), tz=UTC)
    except (ValueError, OverflowError, ArithmeticError):
        return None
    spec = "seconds" if ms % 1000 == 0 else "milliseconds"
    return when.isoformat(timespec=spec)


def _quote(text: str) -> str:
    """A query_string phrase: ``"…"`` with quotes and backslashes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _short_id(at_id: str) -> tuple[str, int]:
    """(the ``@id`` without its version, the version in ms or 0)."""
    parts = at_id.rstrip("/").split("/")
    if len(parts) > 2 and parts[-1].isdigit() and len(parts[-1]) >= 10:
        return "/".join(parts[:-1]), int(parts[-1])
    return "/".join(parts), 0


def _version(obj: Mapping[str, Any]) -> int:
    v = obj.get("@version")
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    at_id = obj.get("@id")
    return _short_id(at_id)[1] if isinstance(at_id, str) else 0


def _is_assertion(obj: Mapping[str, Any]) -> bool:
    """An Assertion under any ``schema.cassproject.org/0.x`` or legacy eduworks context."""
    types = obj.get("@type")
    types = types if isinstance(types, list) else [types]
    ctx = obj.get("@context")
    ctx = ctx if isinstance(ctx, str) else ""
    for t in types:
        if not isinstance(t, str):
            continue
        if "://" in t:
            base, _, last = t.rstrip("/").rpartition("/")
            if last.lower() == "assertion" and _ASSERTION_CONTEXT_RE.match(base):
                return True
        elif t.lower() == "assertion" and (not ctx or _ASSERTION_CONTEXT_RE.match(ctx)):
            return True
    return False


def _pem_equal(a: str, b: str) -> bool:
    return "".join(a.split()) == "".join(b.split())


class _WindowFull(Exception):
    """Internal: a query reached the result window with more results possible."""


# -- the source ------------------------------------------------------------------------


class CassSource:
    """Evidence records from a CaSS repository; one instance per worker process."""

    def __init__(self, config: CassConfig, *, http: HttpClient, key: kbac.EngineKey | None) -> None:
        self.config = config
        self.name = config.name
        self._http = http
        self._key = key
        self._sheets = kbac.SignatureSheets(key, config.base_url)
        self._framework: dict[str, Any] | None = None

    @classmethod
    def from_uri(
        cls,
        uri: str,
        *,
        limiter: RateLimiter | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CassSource:
        """Open a source (no network yet). Call this in the worker, not before fork.

        *limiter* is the limiter shared by all workers (made in the parent); without
        one, a limiter local to this process is built from ``CEREDIS_SOURCE_RATE``.
        """
        env = os.environ if env is None else env
        config = parse_uri(uri, env)
        key = kbac.EngineKey.from_file(config.key_path) if config.key_path else None
        settings = HttpSettings.from_env(env)
        headers = {"Accept": "application/json"}
        if config.authorization:
            headers["Authorization"] = config.authorization
        http = HttpClient(
            config.base_url,
            limiter=limiter if limiter is not None else RateLimiter.from_env(env),
            timeouts=settings.timeouts,
            policy=settings.policy,
            headers=headers,
            name=config.name,
        )
        return cls(config, http=http, key=key)

    # -- EvidenceSource ----------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        """Check the server (and the framework, if configured); a clear error if not.

        Adopts the server clock for signature expiry, as the official client does.
        """
        try:
            info = self._http.get_json("ping")
        except SourceError as exc:
            raise SourceError(f"cannot reach CaSS: {exc}") from None
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
            if not isinstance(at_id, str) or not _is_assertion(obj):
                continue
            short, _ = _short_id(at_id)
            if short in seen:
                continue  # the same assertion on two pages
            seen.add(short)
            assertions.append(obj)
        assertions.sort(key=lambda o: (_version(o), o["@id"]))
        records: list[RawEvidence] = []
        delivered: set[str] = set()
        for obj in assertions:
            record = self.to_evidence(obj, agent_id, pem)
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
            last = max((_version(p) for p in people), default=0)
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

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def stats(self) -> dict[str, float]:
        """The HTTP counters (requests, retries, errors, throttled, waited_s)."""
        return self._http.stats()

    def __enter__(self) -> CassSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CassSource({self.name!r})"

    # -- mapping -----------------------------------------------------------------------

    def to_evidence(
        self, obj: Mapping[str, Any], agent_id: str, learner_pem: str
    ) -> RawEvidence | None:
        """One Assertion as an evidence record; None when its subject is someone else.

        Fields: ``agentId`` (the learner asked for), ``competencyId`` (the assertion's
        ``competency`` URL), then the evidence payload's own fields (``evidenceId``,
        ``evidenceType``, ``rawScore``, ``timestamp``, ``context``, ``validator``);
        ``timestamp`` falls back to ``assertionDate`` (ms → UTC ISO). When the payload
        is missing, not JSON or undecryptable, the record carries what could be read
        and its ``where`` names the assertion and the problem. Raises SourceError when
        the subject itself cannot be read (the assertion cannot be attributed).
        """
        at_id = str(obj.get("@id"))
        subject = obj.get("subject")
        if subject is None:
            raise SourceError(
                f"{self.name}: assertion {at_id} came back without its subject: CaSS "
                f"removed its encrypted fields because the request could not read them. "
                f"{self._no_access_hint()}"
            )
        try:
            subject_pem = self._decode(subject)
        except kbac.DecryptionError as exc:
            raise SourceError(
                f"{self.name}: cannot read the subject of assertion {at_id}: {exc}"
            ) from None
        if not isinstance(subject_pem, str) or not _pem_equal(subject_pem, learner_pem):
            return None
        fields: dict[str, Any] = {"agentId": agent_id}
        competency = obj.get("competency")
        if competency is not None:
            fields["competencyId"] = competency
        problems: list[str] = []
        evidence = obj.get("evidence")
        if isinstance(evidence, str | dict):
            evidence = [evidence]
        if not isinstance(evidence, list) or not evidence:
            problems.append("the assertion has no evidence payload")
        else:
            try:
                text = self._decode(evidence[0])
                payload = (
                    json.loads(text, parse_float=Decimal, parse_constant=Decimal)
                    if isinstance(text, str)
                    else text
                )
            except kbac.DecryptionError as exc:
                problems.append(f"the evidence payload cannot be decrypted: {exc}")
            except ValueError:
                problems.append("the evidence payload is not JSON")
            else:
                if isinstance(payload, dict):
                    for k, v in payload.items():
                        if k not in ("agentId", "competencyId"):
                            fields[k] = v
                else:
                    problems.append("the evidence payload is not a JSON object")
        if "timestamp" not in fields and "assertionDate" in obj:
            try:
                iso = ms_to_iso(self._decode(obj["assertionDate"]))
            except kbac.DecryptionError:
                iso = None
            if iso is not None:
                fields["timestamp"] = iso
        if problems:
            fields.setdefault("evidenceId", _short_id(at_id)[0].rsplit("/", 1)[-1])
            return RawEvidence(fields, where=f"{at_id} ({'; '.join(problems)})")
        return RawEvidence(fields, where=at_id)

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
                out.append(_short_id(c)[0])
        return out
