"""A CaSS Assertion as an evidence record: the pure mapping, apart from the queries.

Encrypted fields are read through an :class:`AssertionReader` (the source's engine
key), so the mapping itself makes no request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ceredis import exactjson
from ceredis.errors import SourceError
from ceredis.evidence import RawEvidence
from ceredis.sources import kbac

__all__ = [
    "AssertionReader",
    "assertion_to_evidence",
    "is_assertion",
    "ms_to_iso",
    "pem_equal",
    "short_id",
    "version",
]

_ASSERTION_CONTEXT_RE = re.compile(
    r"^https?://(schema\.cassproject\.org/0\.\d+|schema\.eduworks\.com/cass/0\.\d+)"
)


@dataclass(frozen=True)
class AssertionReader:
    """How the mapping reads fields: *decode* decrypts a value (raising
    :class:`~ceredis.sources.kbac.DecryptionError`); *name* and *no_access_hint* go
    into messages."""

    name: str
    decode: Callable[[Any], Any]
    no_access_hint: str


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


def short_id(at_id: str) -> tuple[str, int]:
    """(the ``@id`` without its version, the version in ms or 0)."""
    parts = at_id.rstrip("/").split("/")
    if len(parts) > 2 and parts[-1].isdigit() and len(parts[-1]) >= 10:
        return "/".join(parts[:-1]), int(parts[-1])
    return "/".join(parts), 0


def version(obj: Mapping[str, Any]) -> int:
    v = obj.get("@version")
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    at_id = obj.get("@id")
    return short_id(at_id)[1] if isinstance(at_id, str) else 0


def is_assertion(obj: Mapping[str, Any]) -> bool:
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


def pem_equal(a: str, b: str) -> bool:
    return "".join(a.split()) == "".join(b.split())


def assertion_to_evidence(
    obj: Mapping[str, Any], agent_id: str, learner_pem: str, reader: AssertionReader
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
            f"{reader.name}: assertion {at_id} came back without its subject: CaSS "
            f"removed its encrypted fields because the request could not read them. "
            f"{reader.no_access_hint}"
        )
    try:
        subject_pem = reader.decode(subject)
    except kbac.DecryptionError as exc:
        raise SourceError(
            f"{reader.name}: cannot read the subject of assertion {at_id}: {exc}"
        ) from None
    if not isinstance(subject_pem, str) or not pem_equal(subject_pem, learner_pem):
        return None
    fields: dict[str, Any] = {"agentId": agent_id}
    competency = obj.get("competency")
    if competency is not None:
        fields["competencyId"] = competency
    problems: list[str] = []
    payload = _payload(obj.get("evidence"), reader, problems)
    fields.update((k, v) for k, v in payload.items() if k not in ("agentId", "competencyId"))
    if "timestamp" not in fields and "assertionDate" in obj:
        try:
            iso = ms_to_iso(reader.decode(obj["assertionDate"]))
        except kbac.DecryptionError:
            iso = None
        if iso is not None:
            fields["timestamp"] = iso
    if problems:
        fields.setdefault("evidenceId", short_id(at_id)[0].rsplit("/", 1)[-1])
        return RawEvidence(fields, where=f"{at_id} ({'; '.join(problems)})")
    return RawEvidence(fields, where=at_id)


def _payload(evidence: Any, reader: AssertionReader, problems: list[str]) -> dict[str, Any]:
    """The fields of the first evidence payload; what went wrong appended to *problems*."""
    if isinstance(evidence, str | dict):
        evidence = [evidence]
    if not isinstance(evidence, list) or not evidence:
        problems.append("the assertion has no evidence payload")
        return {}
    try:
        text = reader.decode(evidence[0])
        payload = exactjson.loads(text) if isinstance(text, str) else text
    except kbac.DecryptionError as exc:
        problems.append(f"the evidence payload cannot be decrypted: {exc}")
        return {}
    except ValueError:
        problems.append("the evidence payload is not JSON")
        return {}
    if not isinstance(payload, dict):
        problems.append("the evidence payload is not a JSON object")
        return {}
    return payload
