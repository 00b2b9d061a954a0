"""An xAPI statement as an evidence record: the pure mapping (``docs/xapi.md``).

Fields that cannot be read are left out and values of the wrong kind passed on as
found, so the scoring core names what is missing or wrong in the statement.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from ceredis.evidence import RawEvidence

__all__ = [
    "COMPETENCY",
    "CONTEXT",
    "DEFAULT_HOME_PAGE",
    "EVIDENCE_ID",
    "EVIDENCE_TYPE",
    "RAW_SCORE_TEXT",
    "VALIDATOR",
    "VOIDED",
    "actor_id",
    "agreed_score",
    "raw_score",
    "statement_to_evidence",
]

#: The ``actor.account.homePage`` of our learners unless configured otherwise.
DEFAULT_HOME_PAGE = "https://ceredis.net/learners"

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
#: The verb of a voiding statement (its object a StatementRef to the voided one).
VOIDED = "http://adlnet.gov/expapi/verbs/voided"
#: ``result.extensions``: the raw score's decimal text (``"72.10"``). LRSs re-encode
#: JSON numbers through binary floats, so ``result.score.raw`` 72.10 comes back 72.1.
RAW_SCORE_TEXT = _EXT + "raw-score"

# The raw-score text and result.score agree when they differ by no more than a binary64
# re-encoding can explain (LRSs parse numbers as doubles: 33.333333333333333333 comes
# back 33.333333333333336).
_FLOAT_TOLERANCE = Decimal("1e-15")
# Enough digits for any min/max normalisation whose result terminates.
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
    get = statement.get
    sid = get("id")
    where = f"statement {sid}" if isinstance(sid, str) and sid else f"statement #{position}"
    context = _mapping(get("context"))
    extensions = _mapping(context.get("extensions"))
    ext = extensions.get
    found = {}  # in the order of the record's fields
    if (value := ext(EVIDENCE_ID, sid)) is not None:
        found["evidenceId"] = value
    if (value := actor_id(get("actor"), home_page)) is not None:
        found["agentId"] = value
    if (value := ext(COMPETENCY, _NONE)) is _NONE:  # a default is looked up only when used
        obj = _mapping(get("object"))
        value = obj.get("id") if obj.get("objectType", "Activity") == "Activity" else None
    if value is not None:
        found["competencyId"] = value
    if (value := ext(EVIDENCE_TYPE)) is not None:
        found["evidenceType"] = value
    if (value := raw_score(_mapping(get("result")))) is not None:
        found["rawScore"] = value
    if (value := get("timestamp")) is not None:
        found["timestamp"] = value
    if (value := ext(CONTEXT, _NONE)) is _NONE:
        value = context.get("registration")
    if value is not None:
        found["context"] = value
    if (value := ext(VALIDATOR, _NONE)) is _NONE:
        value = _agent_label(context.get("instructor"))
    if value is not None:
        found["validator"] = value
    return RawEvidence(found, where)


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
        if type(low) is int and type(high) is int and low == 0 and high == 100:
            value = raw  # the usual scale, the checks below all pass
        elif not (_is_number(low) and _is_number(high)) or not Decimal(low) < Decimal(high):
            return f"result.score min {low} / max {high} is not a scale"
        elif low == 0 and high == 100:
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
    return agreed_score(value, _mapping(result.get("extensions")).get(RAW_SCORE_TEXT))


def agreed_score(value: int | Decimal, text: Any) -> Any:
    """*value* checked against the raw-score extension's *text* (``None``: absent): the
    exact value when they agree, else a string saying they do not."""
    if text is None:
        return value
    kind = type(value)
    if (kind is Decimal or kind is int) and type(text) is str and str(value) == text:
        return value  # the text of the value itself: it agrees, and adds no digit
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
        value = Decimal(text)
        return value if value.is_finite() else None  # NaN, Infinity: no score
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
_NONE = object()  # a field's default not looked up yet
