"""The xAPI source: a learner's evidence read from any xAPI LRS (Ralph, Learning Locker…).

URI ``xapi+https://host/xAPI/`` (``xapi+http://`` for tests), optional query options
``homePage`` (the account home page that names our learners) and ``limit`` (page
size). Credentials come from the environment, never from the URI. One
``GET statements?agent=…`` per learner, following ``more`` links; each statement
becomes one evidence record (mapping in ``docs/xapi.md``). A statement that lacks
what a record needs is delivered as an incomplete record, so the learner gets an
``ERROR`` naming it, never a score computed without it.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Callable, Hashable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from ceredis.config import Settings
from ceredis.errors import ConfigError, SourceError
from ceredis.evidence import RawEvidence, utc_sort_text
from ceredis.sources.http import parse_json
from ceredis.sources.ratelimit import RateLimiter
from ceredis.sources.remote import RemoteSource, http_client
from ceredis.sources.uri import parse_source_uri
from ceredis.sources.xapi_mapping import (
    COMPETENCY,
    CONTEXT,
    DEFAULT_HOME_PAGE,
    EVIDENCE_ID,
    EVIDENCE_TYPE,
    RAW_SCORE_TEXT,
    VALIDATOR,
    VOIDED,
    actor_id,
    raw_score,
    statement_to_evidence,
)
from ceredis.sources.xapi_typed import TypedPage, as_general, decode_page, typed_evidence

__all__ = [
    "COMPETENCY",
    "CONTEXT",
    "DEFAULT_HOME_PAGE",
    "ENV_HOME_PAGE",
    "ENV_PASSWORD",
    "ENV_USERNAME",
    "EVIDENCE_ID",
    "EVIDENCE_TYPE",
    "RAW_SCORE_TEXT",
    "VALIDATOR",
    "XapiSource",
    "actor_id",
    "check_uri",
    "raw_score",
    "statement_to_evidence",
]

ENV_USERNAME = "CEREDIS_XAPI_USERNAME"
ENV_PASSWORD = "CEREDIS_XAPI_PASSWORD"
ENV_HOME_PAGE = "CEREDIS_XAPI_HOMEPAGE"

DEFAULT_PAGE_SIZE = 100
XAPI_VERSION = "1.0.3"
_OPTIONS = ("homePage", "limit")
_MAX_PAGE_SIZE = 10_000


# -- the URI ---------------------------------------------------------------------------


def check_uri(uri: str) -> str:
    """Validate an ``xapi+http(s)://`` URI without network; return its display name.

    Raises :class:`~ceredis.errors.ConfigError` naming the problem. Credentials in the
    URI are refused (they would end up in logs and ledgers).
    """
    return _parse_uri(uri)[0]


def _parse_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """``(display name, http base URL ending in "/", options)`` of an xAPI URI."""
    parsed = parse_source_uri(
        uri, "xapi", "xAPI", _OPTIONS, f"set {ENV_USERNAME} and {ENV_PASSWORD}"
    )
    options = parsed.options
    if "limit" in options:
        _page_size(options["limit"])
    if "homePage" in options:
        _home_page(options["homePage"], "the homePage option of the xAPI source URI")
    path = parsed.path if parsed.path.endswith("/") else parsed.path + "/"
    return parsed.display("xapi", path), f"{parsed.scheme}://{parsed.netloc}{path}", options


def _page_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = 0
    if not 1 <= size <= _MAX_PAGE_SIZE:
        raise ConfigError(
            f"xAPI source URI: limit={text!r} must be a page size from 1 to {_MAX_PAGE_SIZE}"
        )
    return size


def _home_page(text: str, where: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where} must be an http(s) URL (an IRL), got {text!r}")
    return text


# -- the source ------------------------------------------------------------------------


class XapiSource(RemoteSource):
    """Evidence from an xAPI LRS; one instance per worker process (not fork-shared).

    Build it with :meth:`from_uri` in the worker's pool initializer. ``limiter`` is the
    batch's shared :class:`~ceredis.sources.ratelimit.RateLimiter`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        settings: Settings,
        name: str | None = None,
        home_page: str = DEFAULT_HOME_PAGE,
        page_size: int = DEFAULT_PAGE_SIZE,
        limiter: RateLimiter | None = None,
    ) -> None:
        username, password = settings.xapi.username, settings.xapi.password
        if (username is None) != (password is None):
            raise ConfigError(
                f"xAPI credentials: set both {ENV_USERNAME} and {ENV_PASSWORD}, or neither"
            )
        if username is not None and ":" in username:
            raise ConfigError(f"{ENV_USERNAME} must not contain ':' (HTTP Basic auth forbids it)")
        self.name = name or base_url
        self.home_page = home_page
        self.page_size = page_size
        headers: dict[str, str] = {}
        secrets: list[str] = []
        if username is not None and password is not None:
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
            secrets = [password, token]
        self._authenticated = bool(headers)
        self._http = http_client(
            base_url, settings, limiter, headers=headers, secrets=secrets, name=self.name
        )

    @classmethod
    def check_uri(cls, uri: str, settings: Settings) -> str:
        """Validate an xAPI URI without network (the settings are checked on opening)."""
        return check_uri(uri)

    @classmethod
    def from_uri(
        cls, uri: str, *, settings: Settings, limiter: RateLimiter | None = None
    ) -> XapiSource:
        """Open the source named by *uri* with the credentials and home page of *settings*
        (the URI's ``homePage`` option wins over ``CEREDIS_XAPI_HOMEPAGE``)."""
        name, base_url, options = _parse_uri(uri)
        if "homePage" in options:
            home_page = options["homePage"]
        elif settings.xapi.home_page:
            home_page = _home_page(settings.xapi.home_page, ENV_HOME_PAGE)
        else:
            home_page = DEFAULT_HOME_PAGE
        page_size = _page_size(options["limit"]) if "limit" in options else DEFAULT_PAGE_SIZE
        return cls(
            base_url,
            settings=settings,
            name=name,
            home_page=home_page,
            page_size=page_size,
            limiter=limiter,
        )

    # -- EvidenceSource ----------------------------------------------------------------

    def fetch(self, agent_id: str) -> list[RawEvidence]:
        """The learner's statements as evidence records, sorted by timestamp then id.

        Statements repeated across pages are delivered once; voided statements (and the
        voiding ones) are left out, as a conformant LRS does.
        """
        agent = json.dumps(self._agent_filter(agent_id), sort_keys=True, separators=(",", ":"))
        return pages_evidence(list(self._pages({"agent": agent}, _decode_page)), self.home_page)

    def agents(self) -> Iterator[str]:
        """Every learner found in the LRS, sorted.

        Costly: it reads every statement the LRS holds (one request per page of
        ``limit`` statements). Actors named by an account of another ``homePage``, or
        by neither an account nor an ``mbox``, are not our learners and are left out.
        """
        found = set()
        for statement in self._statements({}):
            if not isinstance(statement, Mapping) or _is_voiding(statement):
                continue
            agent_id = actor_id(statement.get("actor"), self.home_page)
            if agent_id:
                found.add(agent_id)
        return iter(sorted(found))

    def ping(self) -> None:
        """One authenticated ``GET statements?limit=1``; a clear SourceError if it fails."""
        try:
            self._page("statements", {"limit": "1"}, parse_json)
        except SourceError as exc:
            raise type(exc)(f"the xAPI source cannot start: {exc}") from None

    # -- HTTP --------------------------------------------------------------------------

    def _agent_filter(self, agent_id: str) -> dict[str, Any]:
        if agent_id.startswith("mailto:"):
            return {"objectType": "Agent", "mbox": agent_id}
        return {"objectType": "Agent", "account": {"homePage": self.home_page, "name": agent_id}}

    def _statements(self, fields: Mapping[str, str]) -> Iterator[Any]:
        """Every statement of a query, page after page (``more`` links followed)."""
        for page in self._pages(fields, parse_json):
            yield from page["statements"]

    def _pages(self, fields: Mapping[str, str], decode: Callable[[bytes], Any]) -> Iterator[Any]:
        """Every page of a query, each as *decode* reads it (``more`` links followed)."""
        body = self._page("statements", {**fields, "limit": str(self.page_size)}, decode)
        seen: set[str] = set()
        while True:
            yield body
            more = body.more if type(body) is TypedPage else body.get("more")
            if not more:
                return
            if more in seen:
                raise SourceError(
                    f"{self.name}: the LRS sent the same 'more' link twice; its paging is "
                    "broken (duplicate statement ids?), so the statements cannot all be read"
                )
            seen.add(more)
            body = self._page(more, None, decode)

    def _page(
        self, path: str, fields: Mapping[str, str] | None, decode: Callable[[bytes], Any]
    ) -> Any:
        """One page as *decode* reads it: a TypedPage, or a checked
        ``{"statements": [...], "more": str}``; a SourceError if it is neither."""
        response = self._http.request(
            "GET",
            path,
            fields=fields,
            headers={"X-Experience-API-Version": XAPI_VERSION, "Accept": "application/json"},
            ok=(401, 403),
            decode=decode,
        )
        if response.status in (401, 403):
            if self._authenticated:
                hint = f"check {ENV_USERNAME} and {ENV_PASSWORD}"
            else:
                hint = f"set {ENV_USERNAME} and {ENV_PASSWORD}"
            raise SourceError(
                f"{self.name}: the LRS refused the credentials (HTTP {response.status}); {hint}"
            )
        body = response.body
        if type(body) is TypedPage:
            return body
        if not isinstance(body, dict) or not isinstance(body.get("statements"), list):
            raise SourceError(
                f"{self.name}: GET statements did not answer an xAPI StatementResult "
                "(an object with a 'statements' array); is the URI the LRS's xAPI endpoint?"
            )
        more = body.get("more")
        if more is not None and not isinstance(more, str):
            raise SourceError(f"{self.name}: the LRS's 'more' link is not a string")
        return body


def pages_evidence(pages: list[Any], home_page: str) -> list[RawEvidence]:
    """The evidence records of a learner's pages (each as :func:`_decode_page` reads
    it): the typed fast lane when every page is common, else the general mapping."""
    if all(type(page) is TypedPage for page in pages):
        return typed_evidence(pages, home_page)
    statements = _effective(_general_statements(pages))
    return [statement_to_evidence(s, home_page, n) for n, s in enumerate(statements, start=1)]


def _decode_page(data: bytes) -> Any:
    """A page of common statements as a TypedPage, any other as the general decoder
    reads it (and refuses it: a decode error the HTTP client retries)."""
    page = decode_page(data)
    return parse_json(data) if page is None else page


def _general_statements(pages: list[Any]) -> Iterator[Any]:
    """The statements of pages read either way, as the general decoder gives them."""
    for page in pages:
        if type(page) is TypedPage:
            yield from as_general(page)
        else:
            yield from page["statements"]


def _is_voiding(statement: Mapping[str, Any]) -> bool:
    verb = statement.get("verb")
    if _is_dict(verb) and verb.get("id") == VOIDED:
        obj = statement.get("object")
        return _is_dict(obj) and obj.get("objectType") == "StatementRef"
    return False


def _effective(statements: Iterator[Any]) -> list[Any]:
    """Dedupe by statement id, drop voiding and voided statements, sort deterministically."""
    kept: list[Any] = []
    by_id: dict[str, Any] = {}
    voided: set[Any] = set()
    for statement in statements:
        if _is_dict(statement):
            if _is_voiding(statement):
                target = statement["object"].get("id")
                if isinstance(target, Hashable):  # not a list: no statement has that id
                    voided.add(target)
                continue
            sid = statement.get("id")
            if isinstance(sid, str):
                first = by_id.get(sid)
                if first is None:
                    by_id[sid] = statement
                elif first == statement:
                    continue  # the same statement seen on two pages
        kept.append(statement)
    if voided:
        kept = [s for s in kept if not (_is_dict(s) and _hashable_id(s) in voided)]
    return sorted(kept, key=_order)


def _is_dict(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _hashable_id(statement: Mapping[str, Any]) -> Any:
    """The statement's id, or a marker voiding nothing when it cannot be one (a list)."""
    sid = statement.get("id")
    return sid if isinstance(sid, Hashable) else _NO_ID


_NO_ID = object()


def _order(statement: Any) -> tuple[Any, ...]:
    """Sort key: the timestamp's instant, then the statement id; unreadable ones last.

    The instant is its UTC text ``YYYY-MM-DDTHH:MM:SS.ffffff`` (text order is time
    order), read through the core's cache for the common form.
    """
    if not _is_dict(statement):
        return (2, json.dumps(statement, default=str, sort_keys=True))
    sid = str(statement.get("id", ""))
    stamp = statement.get("timestamp")
    instant = utc_sort_text(stamp)
    if instant is not None:
        return (0, instant, sid)
    try:
        moment = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
        utc = moment.astimezone(UTC) if moment and moment.utcoffset() is not None else None
    except (ValueError, OverflowError):  # not ISO-8601; beyond the year 9999 in UTC
        utc = None
    if utc is None:
        return (1, str(stamp), sid)
    return (0, utc.replace(tzinfo=None).isoformat(timespec="microseconds"), sid)
