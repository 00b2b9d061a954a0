"""Evidence records (scoring.md §1): what a source delivers and what the core accepts.

Pure: no I/O. A source delivers :class:`RawEvidence`; :func:`submitted` turns it into a
JSON-safe, canonical-encodable form (the form recorded in the ledger for a learner whose
evidence is invalid, so a replay sees exactly what the engine saw); :func:`validate`
checks every rule and returns normalised :class:`Evidence` or every problem found.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from operator import attrgetter
from typing import Any, NamedTuple

from ceredis.exactjson import unreadable
from ceredis.referential import Referential

__all__ = [
    "FIELDS",
    "OPTIONAL",
    "Evidence",
    "RawEvidence",
    "evidence_from_rows",
    "evidence_rows",
    "id_problem",
    "in_referential",
    "plain_evidence",
    "prechecked_evidence",
    "submitted",
    "validate",
]

#: The fields of an evidence record, in the order messages list them.
FIELDS = (
    "evidenceId",
    "agentId",
    "competencyId",
    "evidenceType",
    "rawScore",
    "timestamp",
    "context",
    "validator",
)
#: The fields a record may omit.
OPTIONAL = ("context", "validator")
#: Unicode categories an id may not hold: controls (C0, C1, DEL), invisible format
#: characters and line or paragraph separators.
_NOT_IN_IDS = ("Cc", "Cf", "Zl", "Zp")
_MAX_SAFE = 2**53 - 1
_SHOWN = 80  # the longest text quoted whole in a message


class RawEvidence(NamedTuple):
    """One evidence record exactly as a source received it, before validation.

    ``fields`` holds JSON-like values; numbers are ``int`` or ``decimal.Decimal``
    carrying their decimal text (a binary ``float`` is accepted and read through its
    shortest repr). ``where`` locates the record for messages: ``"line 17"``, an
    assertion URL, a statement id.
    """

    fields: Mapping[str, Any]
    where: str = ""


class Evidence(NamedTuple):
    """A valid, normalised evidence record: competency as ``X.Y``, score exact, time UTC.

    A named tuple: built for every record of every learner, it must be cheap.
    """

    evidence_id: str
    agent_id: str
    competency_id: str
    evidence_type: str
    raw_score: Decimal
    timestamp: str
    context: str | None = None
    validator: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as the ledger keeps it (optional fields only when present)."""
        out: dict[str, Any] = {
            "evidenceId": self.evidence_id,
            "agentId": self.agent_id,
            "competencyId": self.competency_id,
            "evidenceType": self.evidence_type,
            "rawScore": self.raw_score,
            "timestamp": self.timestamp,
        }
        if self.context is not None:
            out["context"] = self.context
        if self.validator is not None:
            out["validator"] = self.validator
        return out


_PLAIN = (str, Decimal, int, type(None), bool)


def submitted(raw: RawEvidence) -> dict[str, Any]:
    """The record as a canonical-encodable value: ``{"fields": …, "where": …}``.

    Finite floats become Decimals through their shortest repr; NaN and infinities become
    ``{"$number": "NaN"}``; values that are not JSON become ``{"$unsupported": type}``.
    Validation reads this form, so the engine and a replay see the same thing.
    """
    fields = raw.fields if isinstance(raw.fields, Mapping) else {"$unsupported": "record"}
    return {"fields": _json_safe(fields), "where": str(raw.where)}


def _flat_safe(fields: dict[str, Any]) -> bool:
    """Whether a record is already JSON-safe: str keys; strings, safe integers, finite
    Decimals, booleans or nulls as values (what files and LRSs deliver)."""
    for key, value in fields.items():
        kind = type(value)
        if kind is str and type(key) is str:
            continue
        if type(key) is not str or kind not in _PLAIN:
            return False
        if kind is Decimal and not value.is_finite():
            return False
        if kind is int and not -_MAX_SAFE <= value <= _MAX_SAFE:
            return False
    return True


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -_MAX_SAFE <= value <= _MAX_SAFE else Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else {"$number": str(Decimal(value))}
    if isinstance(value, Decimal):
        return value if value.is_finite() else {"$number": str(value)}
    if type(value) is dict and _flat_safe(value):
        return dict(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return {"$unsupported": type(value).__name__}


def validate(
    agent_id: str, records: Iterable[Mapping[str, Any]], referential: Referential
) -> tuple[list[Evidence], list[str]]:
    """Check submitted records (see :func:`submitted`) for one learner.

    Returns the normalised evidence, deduplicated and sorted by ``evidenceId``, and the
    list of problems (empty when every record is valid), each naming the record.
    """
    problems: list[str] = []
    kept: dict[str, tuple[Evidence, str]] = {}
    plain_id = _plain_id(agent_id)
    for position, record in enumerate(records, start=1):
        fields = record.get("fields")
        where = record.get("where") or f"record {position}"
        if type(fields) is not dict and not isinstance(fields, Mapping):
            problems.append(f"evidence at {where}: not an object")
            continue
        evidence = _plainly_valid(agent_id, fields, referential) if plain_id else None
        errors = []
        if evidence is None:
            evidence, errors = _check(agent_id, fields, referential)
        eid = fields.get("evidenceId")
        label = f"evidence {eid} ({where})" if _text(eid) else f"evidence at {where}"
        if errors:
            problems.extend(f"{label}: {e}" for e in errors)
            continue
        assert evidence is not None
        previous = kept.get(evidence.evidence_id)
        if previous is None:
            kept[evidence.evidence_id] = (evidence, where)
        elif previous[0] != evidence:
            problems.append(
                f"evidence {evidence.evidence_id} ({previous[1]} and {where}): the same "
                f"evidenceId with different content ({_difference(previous[0], evidence)})"
            )
    if problems:
        return [], sorted(problems)
    return sorted((e for e, _ in kept.values()), key=_BY_ID), []


_BY_ID = attrgetter("evidence_id")  # ids are unique once kept: the order of the whole tuple


def plain_evidence(
    agent_id: str, records: Iterable[RawEvidence], referential: Referential
) -> list[Evidence] | None:
    """What :func:`validate` returns for records as delivered when every one is plainly
    valid (the common case, in one pass, without the :func:`submitted` copies); ``None``
    for anything else, which ``submitted`` → ``validate`` then judges and names."""
    return _plain(agent_id, records, referential)


def prechecked_evidence(agent_id: str, records: Iterable[RawEvidence]) -> list[Evidence] | None:
    """:func:`plain_evidence` but for the referential, which a run checks with
    :func:`in_referential`: an evidence index judges a file's records once, not every run."""
    return _plain(agent_id, records, None)


def in_referential(evidence: Iterable[Evidence], referential: Referential) -> bool:
    """Whether the referential knows every competency and evidence type of *evidence*
    (what :func:`prechecked_evidence` leaves to the run)."""
    competencies, types = referential.competencies, referential.evidence_types
    return all(e.competency_id in competencies and e.evidence_type in types for e in evidence)


def evidence_rows(evidence: Iterable[Evidence]) -> list[list[str | None]]:
    """Evidence as JSON arrays of texts (the score's exact text among them), for an
    evidence index; :func:`evidence_from_rows` reads them back equal, digit for digit."""
    return [
        [
            e.evidence_id,
            e.competency_id,
            e.evidence_type,
            str(e.raw_score),
            e.timestamp,
            e.context,
            e.validator,
        ]
        for e in evidence
    ]


def evidence_from_rows(agent_id: str, rows: Iterable[list[Any]]) -> list[Evidence]:
    """The evidence :func:`evidence_rows` wrote, for the learner *agent_id*."""
    scores = _TEXT_SCORES
    evidence = []
    for eid, competency, etype, text, timestamp, context, validator in rows:
        score = scores.get(text)
        if score is None:  # str() of a Decimal reads back with its own exponent
            score = _remember(scores, text, Decimal(text))
        evidence.append(
            _EVIDENCE(
                Evidence, (eid, agent_id, competency, etype, score, timestamp, context, validator)
            )
        )
    return evidence


_TEXT_SCORES: dict[str, Decimal] = {}


def _plain(
    agent_id: str, records: Iterable[RawEvidence], referential: Referential | None
) -> list[Evidence] | None:
    if not _plain_id(agent_id):
        return None
    kept: dict[str, Evidence] = {}
    for record in records:
        fields = record.fields
        if type(fields) is not dict:
            return None
        evidence = _plainly_valid(agent_id, fields, referential)
        if evidence is None:
            return None
        previous = kept.setdefault(evidence.evidence_id, evidence)
        if previous is not evidence and previous != evidence:
            return None
    return sorted(kept.values(), key=_BY_ID) if kept else None


def _plain_id(value: str) -> bool:
    """Whether *value* is an id of printable ASCII, not blank (checked once per learner:
    a record of a plainly valid learner repeats the learner's id)."""
    return value.isascii() and value.isprintable() and bool(value.strip())


def _plainly_valid(
    agent_id: str, fields: Mapping[str, Any], referential: Referential | None
) -> Evidence | None:
    """The evidence of a record of exact, valid values (the common case, checked in few
    steps); ``None`` for any other, which :func:`_check` then judges and names.
    *agent_id* is a plain id (:func:`_plain_id`); without a *referential*, the
    competency and evidence type are left to :func:`in_referential`."""
    get = fields.get
    eid, agent, competency = get("evidenceId"), get("agentId"), get("competencyId")
    etype, value = get("evidenceType"), get("rawScore")
    context, validator = get("context"), get("validator")
    if not (
        fields.keys() <= _FIELD_NAMES
        and type(eid) is str
        and eid.isascii()
        and eid.isprintable()
        and eid.strip()
        and agent == agent_id
        and type(agent) is str
        and type(competency) is str
        and type(etype) is str
        and (
            referential is None
            or (competency in referential.competencies and etype in referential.evidence_types)
        )
        and (context is None or type(context) is str)
        and (validator is None or type(validator) is str)
    ):
        return None
    kind = type(value)
    if kind is int:
        score = _INT_SCORES.get(value)  # None: outside 0–100
    elif kind is float:  # read through its shortest repr, as submitted() reads it
        score = _FLOAT_SCORES.get(value)
        if score is None:
            score = _float_score(value)
        if score is not None and not 0 <= score <= 100:
            return None
    elif kind is Decimal and value.is_finite() and 0 <= value <= 100:
        score = _normalized(value)  # after the range check: normalize() rounds to 28 digits
    else:
        return None
    if score is None:
        return None
    timestamp = _utc_text(get("timestamp"))
    if timestamp is None:
        return None
    return _EVIDENCE(
        Evidence, (eid, agent, competency, etype, score, timestamp, context, validator)
    )


def _normalized(score: Decimal) -> Decimal:
    return score.normalize() if score else Decimal(0)


_EVIDENCE = tuple.__new__  # Evidence(...) without its generated __new__'s frame
_INT_SCORES = {i: _normalized(Decimal(i)) for i in range(101)}


def _float_score(value: float) -> Decimal | None:
    """A float raw score as the normalised Decimal of its shortest repr (kept: scores
    repeat), or ``None`` when it is not finite."""
    if not math.isfinite(value):
        return None
    return _remember(_FLOAT_SCORES, value, _normalized(Decimal(repr(value))))


def _remember(cache: dict[Any, Decimal], key: Any, score: Decimal) -> Decimal:
    """*score*, kept in *cache* under *key* while the cache is small (scores repeat)."""
    if len(cache) < _MAX_CACHED_SCORES:
        cache[key] = score
    return score


_FLOAT_SCORES: dict[float, Decimal] = {}
_MAX_CACHED_SCORES = 100_000


_FIELD_NAMES = frozenset(FIELDS)


def _check(
    agent_id: str, fields: Mapping[str, Any], referential: Referential
) -> tuple[Evidence | None, list[str]]:
    errors = [
        f"{name} holds {why}"
        for name, v in fields.items()
        if isinstance(v, dict | list) and (why := unreadable(v))  # only those can be
    ]
    if errors:
        return None, errors
    eid = fields.get("evidenceId")
    if not _text(eid):
        errors.append(f"evidenceId must be a non-empty string, found {_show(eid)}")
    elif problem := id_problem("evidenceId", eid):
        errors.append(problem)

    agent = fields.get("agentId")
    if not _text(agent):
        errors.append(f"agentId must be a non-empty string, found {_show(agent)}")
    elif problem := id_problem("agentId", agent):
        errors.append(problem)
    elif agent != agent_id:
        errors.append(f"agentId {_show(agent)} is not this learner ({_show(agent_id)})")

    competency = None
    ref = fields.get("competencyId")
    if not _text(ref):
        errors.append(f"competencyId must be a non-empty string, found {_show(ref)}")
    else:
        competency = referential.resolve_competency(ref)
        if competency is None:
            errors.append(
                f"unknown competency {_show(ref)} (not an X.Y id, CaSS uuid or CaSS URL of "
                f"referential {referential.id})"
            )

    etype = fields.get("evidenceType")
    if not isinstance(etype, str) or etype not in referential.evidence_types:
        known = ", ".join(referential.evidence_types)
        errors.append(f"unknown evidenceType {_show(etype)} (expected one of {known})")

    score, score_error = _raw_score(fields)
    if score_error:
        errors.append(score_error)

    timestamp, time_error = _timestamp(fields.get("timestamp"))
    if time_error:
        errors.append(time_error)

    optional: dict[str, str | None] = {}
    for name in OPTIONAL:
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            errors.append(f"{name} must be a string when present, found {_show(value)}")
        optional[name] = value
    if errors:
        return None, errors
    return (
        Evidence(eid, agent, competency, etype, score, timestamp, **optional),  # type: ignore[arg-type]
        [],
    )


def id_problem(name: str, value: str) -> str | None:
    """Why *value* cannot be an id (a control or invisible character), or ``None``."""
    if value.isascii() and value.isprintable():  # printable ASCII: no Cc, Cf, Zl or Zp
        return None
    for char in value:
        if unicodedata.category(char) in _NOT_IN_IDS:
            return f"{name} {_show(value)} holds the control character U+{ord(char):04X}"
    return None


def _raw_score(fields: Mapping[str, Any]) -> tuple[Decimal | None, str | None]:
    if "rawScore" not in fields or fields["rawScore"] is None:
        return None, "rawScore is missing (no evidence without a raw score)"
    value = fields["rawScore"]
    if isinstance(value, bool):
        return None, f"rawScore must be a number, found the boolean {str(value).lower()}"
    if isinstance(value, dict) and set(value) == {"$number"}:
        return None, f"rawScore must be a finite number, found {value['$number']}"
    if isinstance(value, str):
        found = f"the string {_show(value)}" if value else _show(value)
        return None, f"rawScore must be a number, found {found}"
    if not isinstance(value, int | Decimal):
        return None, f"rawScore must be a number, found {_show(value)}"
    try:
        score = Decimal(value)
    except InvalidOperation:  # pragma: no cover - int and finite Decimal always convert
        return None, f"rawScore {value} is not a number"
    if not score.is_finite():
        return None, f"rawScore must be a finite number, found {score}"
    if not 0 <= score <= 100:
        return None, f"rawScore {value} is outside 0–100"
    return _normalized(score), None


def _timestamp(value: Any) -> tuple[str | None, str | None]:
    if not isinstance(value, str) or not value:
        return None, f"timestamp must be an ISO-8601 string with an offset, found {_show(value)}"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None, f"timestamp {_show(value)} is not ISO-8601"
    if moment.tzinfo is None or moment.utcoffset() is None:
        return None, f"timestamp {_show(value)} has no UTC offset"
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        return None, f"timestamp {_show(value)} is outside the years 1–9999 in UTC"
    if utc.year >= 1000:  # isoformat() writes what strftime("%Y-%m-%dT%H:%M:%S.%f") would
        text = utc.isoformat()[:-6]  # without its "+00:00"
        return (text.rstrip("0") if utc.microsecond else text) + "Z", None
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")  # glibc: the year unpadded
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z", None


def _utc_text(value: Any) -> str | None:
    """:func:`_timestamp`'s text (or ``None``), in few steps for the common form
    ``YYYY-MM-DDTHH:MM:SS`` with ``Z`` or a whole-hour offset: only the date and hour
    move, so each (date, hour, offset) is converted once and kept. The last few thousand
    answers are kept whole too: a source that sorts by instant asks twice per record."""
    plain = type(value) is str
    if plain and (known := _RECENT.get(value)) is not None:
        return known
    text = _common_utc_text(value)
    if plain and text is not None:
        if len(_RECENT) >= _MAX_RECENT:
            _RECENT.clear()
        _RECENT[value] = text
    return text


def _common_utc_text(value: Any) -> str | None:
    match = _COMMON.fullmatch(value) if type(value) is str else None
    if match is None:
        return _timestamp(value)[0]
    date_hour, minute_second, offset = match.groups()
    key = date_hour + offset
    hour = _HOURS.get(key)
    if hour is None:
        text, _ = _timestamp(date_hour + ":00:00" + offset)
        if text is None:
            return None
        hour = text[: -len(":00:00Z")]
        if len(_HOURS) < _MAX_HOURS:
            _HOURS[key] = hour
    return hour + minute_second + "Z"


# YYYY-MM-DDTHH, :MM:SS, and Z or a whole-hour offset; the date and hour are checked by
# _timestamp once per (date, hour, offset).
_COMMON = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2})(:[0-5][0-9]:[0-5][0-9])(Z|[+-][0-9]{2}:00)"
)


def utc_sort_text(value: Any) -> str | None:
    """A timestamp of the common form (see :func:`_utc_text`) as its UTC instant written
    ``YYYY-MM-DDTHH:MM:SS.ffffff``, whose text order is time order; ``None`` otherwise."""
    if type(value) is not str or len(value) not in (20, 25):
        return None
    text = _utc_text(value)
    if text is None or len(text) != 20 or text[4] != "-":
        return None
    return text[:19] + ".000000"


_RECENT: dict[str, str] = {}  # a timestamp's text → its UTC text, for the last few
_MAX_RECENT = 4096
_HOURS: dict[str, str] = {}  # (date, hour, offset) → the UTC date and hour
_MAX_HOURS = 200_000


def _difference(a: Evidence, b: Evidence) -> str:
    left, right = a.to_json(), b.to_json()
    diffs = [
        f"{name} {_show(left.get(name))} vs {_show(right.get(name))}"
        for name in FIELDS
        if left.get(name) != right.get(name)
    ]
    return ", ".join(diffs)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        if len(value) > _SHOWN:
            return f"{value[:_SHOWN]!r}… ({len(value):,} characters)"
        return repr(value) if value else "an empty string"
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        if set(value) == {"$unsupported"}:
            return f"a {value['$unsupported']}"
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
