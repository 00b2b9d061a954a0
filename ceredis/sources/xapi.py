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
import decimal
import json
import os
import urllib.parse
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ceredis.errors import ConfigError, SourceError
from ceredis.evidence import RawEvidence
from ceredis.sources.http import HttpClient, HttpSettings, parse_json
from ceredis.sources.ratelimit import RateLimiter
from ceredis.sources.uri import parse_source_uri

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
    "check_uri",
    "statement_to_evidence",
]

ENV_USERNAME = "CEREDIS_XAPI_USERNAME"
ENV_PASSWORD = "CEREDIS_XAPI_PASSWORD"
ENV_HOME_PAGE = "CEREDIS_XAPI_HOMEPAGE"

#: The ``actor.account.homePage`` of our learners unless configured otherwise.
DEFAULT_HOME_PAGE = "https://ceredis.net/learners"
DEFAULT_PAGE_SIZE = 100
XAPI_VERSION = "1.0.3"

_EXT = "https://ceredis.net/xapi/extensions/"
#: ``context.extensions``: the evidence type, ``"P1"`` … ``"P4"``.
EVIDENCE_TYPE = _EXT + "evidence-type"
#: ``context.extensions``: our original ``evidenceId`` (else the statement id is used).
EVIDENCE_ID = _EXT + "evidence-id"
#: ``context.extensions``: the competency (``X.Y``, CaSS uuid or URL), else ``object.id``.
COMPETENCY = _EXT + "competency"
#: ``context.extensions``: the evidence ``context`` (activity / song).
CONTEXT = _EXT + "context"
#: ``context.extensions``: who scored it (else ``context.instructor``).
VALIDATOR = _EXT + "validator"
#: ``result.extensions``: the raw score's decimal text (``"72.10"``). LRSs re-encode
#: JSON numbers through binary floats, so ``result.score.raw`` 72.10 comes back 72.1.
RAW_SCORE_TEXT = _EXT + "raw-score"

# The raw-score text and result.score agree when they differ by no more than a binary64
# re-encoding can explain (LRSs parse numbers as doubles: 33.333333333333333333 comes
# back 33.333333333333336).
_FLOAT_TOLERANCE = Decimal("1e-15")
_VOIDED = "http://adlnet.gov/expapi/verbs/voided"
_OPTIONS = ("homePage", "limit")
_MAX_PAGE_SIZE = 10_000
# Enough digits for any min/max normalisation whose result terminates.
_EXACT = decimal.Context(prec=60, traps=[decimal.InvalidOperation, decimal.DivisionByZero])


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


class XapiSource:
    """Evidence from an xAPI LRS; one instance per worker process (not fork-shared).

    Build it with :meth:`from_uri` in the worker's pool initializer. ``limiter`` is the
    batch's shared :class:`~ceredis.sources.ratelimit.RateLimiter`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str | None = None,
        username: str | None = None,
        password: str | None = None,
        home_page: str = DEFAULT_HOME_PAGE,
        page_size: int = DEFAULT_PAGE_SIZE,
        limiter: RateLimiter | None = None,
        settings: HttpSettings | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise ConfigError(
                f"xAPI credentials: set both {ENV_USERNAME} and {ENV_PASSWORD}, or neither"
            )
        if username is not None and ":" in username:
            raise ConfigError(f"{ENV_USERNAME} must not contain ':' (HTTP Basic auth forbids it)")
        self.name = name or base_url
        self.home_page = home_page
        self.page_size = page_size
        settings = settings or HttpSettings()
        headers: dict[str, str] = {}
        secrets: list[str] = []
        if username is not None and password is not None:
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
            secrets = [password, token]
        self._authenticated = bool(headers)
        self._http = HttpClient(
            base_url,
            limiter=limiter,
            timeouts=settings.timeouts,
            policy=settings.policy,
            headers=headers,
            secrets=secrets,
            name=self.name,
        )

    @classmethod
    def from_uri(
        cls,
        uri: str,
        *,
        limiter: RateLimiter | None = None,
        env: Mapping[str, str] | None = None,
    ) -> XapiSource:
        """Open the source named by *uri*, reading credentials and settings from *env*.

        Environment: ``CEREDIS_XAPI_USERNAME`` / ``CEREDIS_XAPI_PASSWORD`` (Basic auth),
        ``CEREDIS_XAPI_HOMEPAGE`` (overridden by the URI's ``homePage`` option) and the
        HTTP settings ``CEREDIS_SOURCE_*`` (:mod:`ceredis.sources.http`).
        """
        env = os.environ if env is None else env
        name, base_url, options = _parse_uri(uri)
        username = env.get(ENV_USERNAME) or None
        password = env.get(ENV_PASSWORD) or None
        if "homePage" in options:
            home_page = options["homePage"]
        elif env.get(ENV_HOME_PAGE):
            home_page = _home_page(env[ENV_HOME_PAGE], ENV_HOME_PAGE)
        else:
            home_page = DEFAULT_HOME_PAGE
        page_size = _page_size(options["limit"]) if "limit" in options else DEFAULT_PAGE_SIZE
        return cls(
            base_url,
            name=name,
            username=username,
            password=password,
            home_page=home_page,
            page_size=page_size,
            limiter=limiter,
            settings=HttpSettings.from_env(env),
        )

    def __repr__(self) -> str:
        return f"XapiSource({self.name!r})"

    # -- EvidenceSource ----------------------------------------------------------------

    def fetch(self, agent_id: str) -> list[RawEvidence]:
        """The learner's statements as evidence records, sorted by timestamp then id.

        Statements repeated across pages are delivered once; voided statements (and the
        voiding ones) are left out, as a conformant LRS does.
        """
        agent = json.dumps(self._agent_filter(agent_id), sort_keys=True, separators=(",", ":"))
        statements = self._statements({"agent": agent})
        return [
            statement_to_evidence(statement, self.home_page, position)
            for position, statement in enumerate(_effective(statements), start=1)
        ]

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
            self._page("statements", {"limit": "1"})
        except SourceError as exc:
            raise SourceError(f"the xAPI source cannot start: {exc}") from None

    def stats(self) -> dict[str, float]:
        """HTTP counters (requests, retries, errors, throttled, waited_s)."""
        return self._http.stats()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> XapiSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP --------------------------------------------------------------------------

    def _agent_filter(self, agent_id: str) -> dict[str, Any]:
        if agent_id.startswith("mailto:"):
            return {"objectType": "Agent", "mbox": agent_id}
        return {"objectType": "Agent", "account": {"homePage": self.home_page, "name": agent_id}}

    def _statements(self, fields: Mapping[str, str]) -> Iterator[Any]:
        """Every statement of a query, page after page (``more`` links followed)."""
        body = self._page("statements", {**fields, "limit": str(self.page_size)})
        seen: set[str] = set()
        while True:
            yield from body["statements"]
            more = body.get("more")
            if not more:
                return
            if more in seen:
                raise SourceError(
                    f"{self.name}: the LRS sent the same 'more' link twice; its paging is "
                    "broken (duplicate statement ids?), so the statements cannot all be read"
                )
            seen.add(more)
            body = self._page(more, None)

    def _page(self, path: str, fields: Mapping[str, str] | None) -> dict[str, Any]:
        """One page: ``{"statements": [...], "more": str}``, or a SourceError."""
        response = self._http.request(
            "GET",
            path,
            fields=fields,
            headers={"X-Experience-API-Version": XAPI_VERSION, "Accept": "application/json"},
            ok=(401, 403),
            decode=parse_json,
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
        if not isinstance(body, dict) or not isinstance(body.get("statements"), list):
            raise SourceError(
                f"{self.name}: GET statements did not answer an xAPI StatementResult "
                "(an object with a 'statements' array); is the URI the LRS's xAPI endpoint?"
            )
        more = body.get("more")
        if more is not None and not isinstance(more, str):
            raise SourceError(f"{self.name}: the LRS's 'more' link is not a string")
        return body


def _is_voiding(statement: Mapping[str, Any]) -> bool:
    verb, obj = statement.get("verb"), statement.get("object")
    return (
        isinstance(verb, Mapping)
        and verb.get("id") == _VOIDED
        and isinstance(obj, Mapping)
        and obj.get("objectType") == "StatementRef"
    )


def _effective(statements: Iterator[Any]) -> list[Any]:
    """Dedupe by statement id, drop voiding and voided statements, sort deterministically."""
    kept: list[Any] = []
    by_id: dict[str, Any] = {}
    voided: set[Any] = set()
    for statement in statements:
        if isinstance(statement, Mapping):
            if _is_voiding(statement):
                voided.add(statement["object"].get("id"))
                continue
            sid = statement.get("id")
            if isinstance(sid, str):
                if sid in by_id and by_id[sid] == statement:
                    continue  # the same statement seen on two pages
                by_id.setdefault(sid, statement)
        kept.append(statement)
    kept = [s for s in kept if not (isinstance(s, Mapping) and s.get("id") in voided)]
    return sorted(kept, key=_order)


def _order(statement: Any) -> tuple[Any, ...]:
    """Sort key: the timestamp's instant, then the statement id; unreadable ones last."""
    if not isinstance(statement, Mapping):
        return (2, json.dumps(statement, default=str, sort_keys=True))
    sid = str(statement.get("id", ""))
    stamp = statement.get("timestamp")
    try:
        moment = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        return (1, str(stamp), sid)
    return (0, moment.astimezone(UTC), sid)


# -- the mapping (pure) ----------------------------------------------------------------


def actor_id(actor: Any, home_page: str) -> str | None:
    """Our ``agentId`` for an xAPI Agent: its account name (on *home_page*) or its mbox."""
    if not isinstance(actor, Mapping):
        return None
    account = actor.get("account")
    if isinstance(account, Mapping) and account.get("homePage") == home_page:
        name = account.get("name")
        return name if isinstance(name, str) and name else None
    mbox = actor.get("mbox")
    return mbox if isinstance(mbox, str) and mbox else None


def _agent_label(agent: Any) -> str | None:
    """An instructor's name for ``validator``: its account name (any home page) or mbox."""
    agent = _mapping(agent)
    name = _mapping(agent.get("account")).get("name")
    if isinstance(name, str) and name:
        return name
    mbox = agent.get("mbox")
    return mbox if isinstance(mbox, str) and mbox else None


def statement_to_evidence(
    statement: Any, home_page: str = DEFAULT_HOME_PAGE, position: int = 0
) -> RawEvidence:
    """One statement as an evidence record, fields read as the mapping says.

    Fields that cannot be read are left out (the core then names what is missing);
    values of the wrong kind are passed on as found (the core names them). ``where``
    is ``"statement <id>"``.
    """
    if not isinstance(statement, Mapping):
        return RawEvidence({}, f"statement #{position} (not a JSON object)")
    sid = statement.get("id")
    where = f"statement {sid}" if isinstance(sid, str) and sid else f"statement #{position}"
    context = _mapping(statement.get("context"))
    extensions = _mapping(context.get("extensions"))
    fields: dict[str, Any] = {}

    _put(fields, "evidenceId", extensions.get(EVIDENCE_ID, sid))
    _put(fields, "agentId", actor_id(statement.get("actor"), home_page))
    obj = _mapping(statement.get("object"))
    activity_id = obj.get("id") if obj.get("objectType", "Activity") == "Activity" else None
    _put(fields, "competencyId", extensions.get(COMPETENCY, activity_id))
    _put(fields, "evidenceType", extensions.get(EVIDENCE_TYPE))
    _put(fields, "rawScore", raw_score(_mapping(statement.get("result"))))
    _put(fields, "timestamp", statement.get("timestamp"))
    _put(fields, "context", extensions.get(CONTEXT, context.get("registration")))
    _put(fields, "validator", extensions.get(VALIDATOR, _agent_label(context.get("instructor"))))
    return RawEvidence(fields, where)


def raw_score(result: Mapping[str, Any]) -> Any:
    """The 0–100 score of an xAPI ``result``, exact, or ``None`` when there is none.

    ``score.raw`` on its ``min``–``max`` scale (0–100 when absent), else
    ``score.scaled × 100``; the ``raw-score`` extension, when it agrees (to within
    binary64 precision: LRSs re-encode numbers as doubles), gives the exact value
    and its decimal text. A value that cannot be a score comes back as a string saying why
    (the core rejects it, naming the statement).
    """
    score = _mapping(result.get("score"))
    raw, scaled = score.get("raw"), score.get("scaled")
    if raw is not None:
        if not _is_number(raw):
            return raw
        low, high = score.get("min", 0), score.get("max", 100)
        if not (_is_number(low) and _is_number(high)) or not Decimal(low) < Decimal(high):
            return f"result.score min {low} / max {high} is not a scale"
        if low == 0 and high == 100:
            value = raw
        else:
            value = _normalise(Decimal(raw), Decimal(low), Decimal(high))
            if value is None:
                return (
                    f"result.score.raw {raw} on the {low}–{high} scale has no exact "
                    "0–100 decimal equivalent"
                )
    elif scaled is not None:
        if not _is_number(scaled):
            return scaled
        value = _plain(Decimal(scaled).scaleb(2))  # × 100, exact, digits kept
    else:
        return None
    text = _mapping(result.get("extensions")).get(RAW_SCORE_TEXT)
    if text is None:
        return value
    exact = _decimal(text)
    if exact is None or abs(exact - Decimal(value)) > abs(exact) * _FLOAT_TOLERANCE:
        return f"result.score gives {value} but the raw-score extension says {text!r}"
    return value if str(value) == text else exact


def _normalise(raw: Decimal, low: Decimal, high: Decimal) -> Decimal | None:
    ctx = _EXACT.copy()
    ctx.clear_flags()
    value = ctx.divide(ctx.multiply(ctx.subtract(raw, low), Decimal(100)), ctx.subtract(high, low))
    if ctx.flags[decimal.Inexact]:
        return None
    return _plain(value)


def _plain(value: Decimal) -> Decimal:
    """*value* without a positive exponent (``1E+2`` → ``100``); exact."""
    return value.quantize(Decimal(1)) if value.as_tuple().exponent > 0 else value


def _decimal(text: Any) -> Decimal | None:
    if isinstance(text, Decimal | int) and not isinstance(text, bool):
        return Decimal(text)
    if not isinstance(text, str):
        return None
    try:
        value = Decimal(text.strip())
    except decimal.InvalidOperation:
        return None
    return value if value.is_finite() and text.strip() == text else None


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | Decimal)
        and not isinstance(value, bool)
        and Decimal(value).is_finite()
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _put(fields: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        fields[name] = value
