"""The common xAPI statement, decoded straight into typed structs and mapped without
walking dicts: the fast lane of :mod:`ceredis.sources.xapi_mapping`.

A page is taken here only when every statement has the shape below (no unknown field,
every value of its type, a plain score on 0–100, a timestamp of the common form, no
voiding); any other page is decoded and mapped the general way. Both ways give the
same evidence records (``tests/xapi/test_typed.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec
from msgspec import UNSET, Struct, UnsetType, field

from ceredis.evidence import RawEvidence, utc_sort_text
from ceredis.exactjson import decode_typed, plain_number, typed_decoder
from ceredis.sources.xapi_mapping import (
    COMPETENCY,
    CONTEXT,
    EVIDENCE_ID,
    EVIDENCE_TYPE,
    RAW_SCORE_TEXT,
    VALIDATOR,
    VOIDED,
    agreed_score,
)

__all__ = ["Statement", "TypedPage", "as_general", "decode_page", "typed_evidence"]


class _Shape(Struct, forbid_unknown_fields=True, gc=False):
    """A JSON object with these fields only, each absent (UNSET) or of its type."""


class _Account(_Shape):
    homePage: str | UnsetType = UNSET
    name: str | UnsetType = UNSET


class _Agent(_Shape):
    objectType: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    mbox: str | UnsetType = UNSET
    account: _Account | UnsetType = UNSET


class _Verb(_Shape):
    id: str | UnsetType = UNSET
    display: dict[str, str] | UnsetType = UNSET


class _Activity(_Shape):
    objectType: str | UnsetType = UNSET
    id: str | UnsetType = UNSET


class _Score(_Shape):  # any value: the fast lane takes a plain int or Decimal only
    raw: Any = UNSET
    min: Any = UNSET
    max: Any = UNSET
    scaled: Any = UNSET


class _ResultExtensions(_Shape):
    raw_score: str | UnsetType = field(default=UNSET, name=RAW_SCORE_TEXT)


class _Result(_Shape):
    score: _Score | UnsetType = UNSET
    success: bool | UnsetType = UNSET
    completion: bool | UnsetType = UNSET
    extensions: _ResultExtensions | UnsetType = UNSET


class _ContextExtensions(_Shape):
    evidence_id: str | UnsetType = field(default=UNSET, name=EVIDENCE_ID)
    evidence_type: str | UnsetType = field(default=UNSET, name=EVIDENCE_TYPE)
    competency: str | UnsetType = field(default=UNSET, name=COMPETENCY)
    context: str | UnsetType = field(default=UNSET, name=CONTEXT)
    validator: str | UnsetType = field(default=UNSET, name=VALIDATOR)


class _Context(_Shape):
    registration: str | UnsetType = UNSET
    extensions: _ContextExtensions | UnsetType = UNSET


class Statement(_Shape):
    """An xAPI statement of the common shape."""

    id: str | UnsetType = UNSET
    actor: _Agent | UnsetType = UNSET
    verb: _Verb | UnsetType = UNSET
    object: _Activity | UnsetType = UNSET
    result: _Result | UnsetType = UNSET
    context: _Context | UnsetType = UNSET
    timestamp: str | UnsetType = UNSET
    stored: str | UnsetType = UNSET
    version: str | UnsetType = UNSET
    authority: _Agent | UnsetType = UNSET


class _StatementResult(_Shape):
    statements: list[Statement]
    more: str | UnsetType = UNSET


_DECODER = typed_decoder(_StatementResult)


class TypedPage(NamedTuple):
    """A page of common statements, each with its sort key (UTC instant text, id) and
    its record's ``rawScore`` (UNSET: none)."""

    statements: list[Statement]
    keys: list[tuple[str, str]]
    scores: list[Any]
    more: str | None


def decode_page(data: bytes) -> TypedPage | None:
    """*data* as a page of common statements, or ``None`` for the general way."""
    page = decode_typed(data, _DECODER)
    if page is None:
        return None
    keys, scores = [], []
    for statement in page.statements:
        sid, verb = statement.id, statement.verb
        if not sid or (verb is not UNSET and verb.id == VOIDED):
            return None
        instant = utc_sort_text(statement.timestamp)
        score = _score(statement)
        if instant is None or score is None:
            return None
        keys.append((instant, sid))
        scores.append(score)
    return TypedPage(page.statements, keys, scores, page.more or None)


def _score(statement: Statement) -> Any:
    """The record's ``rawScore`` (UNSET: none), or ``None`` when it is not common."""
    result = statement.result
    if result is UNSET or (score := result.score) is UNSET:
        return UNSET
    raw, scaled = score.raw, score.scaled
    low, high = score.min, score.max
    if raw is UNSET or not (low is UNSET or (type(low) is int and low == 0)):
        return None
    if not (high is UNSET or (type(high) is int and high == 100)):
        return None  # another scale: the general way normalises it or says why not
    if not _plain(raw) or not (scaled is UNSET or _plain(scaled)):
        return None
    extensions = result.extensions
    text = None if extensions is UNSET else extensions.raw_score
    return agreed_score(raw, None if text is UNSET else text)


def _plain(value: Any) -> bool:
    kind = type(value)
    return (kind is int or kind is Decimal) and plain_number(value)


def typed_evidence(pages: Iterable[TypedPage], home_page: str) -> list[RawEvidence]:
    """The evidence records of a learner's pages, as the general mapping gives them:
    repeats of a statement once, sorted by instant then id."""
    kept: list[tuple[tuple[str, str], Statement, Any]] = []
    first: dict[str, Statement] = {}
    for page in pages:
        for key, statement, score in zip(page.keys, page.statements, page.scores, strict=True):
            seen = first.setdefault(key[1], statement)
            if seen is not statement and seen == statement:
                continue  # the same statement seen on two pages
            kept.append((key, statement, score))
    kept.sort(key=_first)
    return [_evidence(statement, score, home_page) for _, statement, score in kept]


def _first(item: tuple[tuple[str, str], Statement, Any]) -> tuple[str, str]:
    return item[0]


def _evidence(statement: Statement, score: Any, home_page: str) -> RawEvidence:
    """The record of a common statement, field for field as ``statement_to_evidence``."""
    sid = statement.id
    context = statement.context
    ext = _NO_EXTENSIONS if context is UNSET or context.extensions is UNSET else context.extensions
    found: dict[str, Any] = {"evidenceId": sid if ext.evidence_id is UNSET else ext.evidence_id}
    if (agent := _agent_id(statement.actor, home_page)) is not None:
        found["agentId"] = agent
    if (competency := _competency(statement, ext)) is not None:
        found["competencyId"] = competency
    if ext.evidence_type is not UNSET:
        found["evidenceType"] = ext.evidence_type
    if score is not UNSET:
        found["rawScore"] = score
    found["timestamp"] = statement.timestamp
    if ext.context is not UNSET:
        found["context"] = ext.context
    elif context is not UNSET and context.registration is not UNSET:
        found["context"] = context.registration
    if ext.validator is not UNSET:
        found["validator"] = ext.validator
    return RawEvidence(found, f"statement {sid}")


_NO_EXTENSIONS = _ContextExtensions()


def _agent_id(actor: _Agent | UnsetType, home_page: str) -> str | None:
    if actor is UNSET:
        return None
    account = actor.account
    if account is not UNSET and account.homePage == home_page:
        return account.name or None  # type: ignore[return-value]
    return actor.mbox or None  # type: ignore[return-value]


def _competency(statement: Statement, ext: _ContextExtensions) -> str | None:
    if ext.competency is not UNSET:
        return ext.competency
    activity = statement.object
    if activity is UNSET or activity.objectType not in (UNSET, "Activity"):
        return None
    return None if activity.id is UNSET else activity.id


def as_general(page: TypedPage) -> list[Any]:
    """The statements of a typed page as the general decoder gives them (dicts)."""
    return [msgspec.to_builtins(s, builtin_types=(Decimal,)) for s in page.statements]
