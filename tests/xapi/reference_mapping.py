"""The xAPI mapping and ordering as they were before their fast paths (commit ca6e9ba):
the oracle that ``test_mapping_fast`` compares ``ceredis.sources.xapi`` with. Frozen:
never change it to follow the product."""

from __future__ import annotations

import decimal
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from ceredis.evidence import RawEvidence
from ceredis.sources.xapi_mapping import (
    COMPETENCY,
    CONTEXT,
    DEFAULT_HOME_PAGE,
    EVIDENCE_ID,
    EVIDENCE_TYPE,
    RAW_SCORE_TEXT,
    VALIDATOR,
)

_VOIDED = "http://adlnet.gov/expapi/verbs/voided"
_FLOAT_TOLERANCE = Decimal("1e-15")
_EXACT = decimal.Context(prec=60, traps=[decimal.InvalidOperation, decimal.DivisionByZero])


def actor_id(actor: Any, home_page: str) -> str | None:
    """Our ``agentId`` for an xAPI Agent: its account name (on *home_page*) or its mbox."""
    actor = _mapping(actor)
    account = _mapping(actor.get("account"))
    if account.get("homePage") == home_page:
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
    if type(statement) is not dict and not isinstance(statement, Mapping):
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
    kind = type(value)
    if kind is Decimal:
        return value.is_finite()
    return kind is int or (
        isinstance(value, int | Decimal)
        and not isinstance(value, bool)
        and Decimal(value).is_finite()
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if type(value) is dict or isinstance(value, Mapping) else _EMPTY


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _put(fields: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        fields[name] = value


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
