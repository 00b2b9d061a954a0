"""Evidence records as xAPI statements, exactly as :mod:`ceredis.sources.xapi` reads them.

The inverse of the source's mapping, for tests, benchmarks and seeding a real LRS:
``statement_to_evidence(evidence_to_statement(r))`` gives back the fields of ``r``
(same strings, same score value *and* decimal text). Deterministic: the statement id
is a uuid5 of :data:`NAMESPACE` and the record's (agentId, evidenceId), since an
evidenceId is only unique per learner.
"""

from __future__ import annotations

import json
import math
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from ceredis.sources.xapi_mapping import (
    COMPETENCY,
    CONTEXT,
    DEFAULT_HOME_PAGE,
    EVIDENCE_ID,
    EVIDENCE_TYPE,
    RAW_SCORE_TEXT,
    VALIDATOR,
)

__all__ = [
    "COMPETENCY_ACTIVITY",
    "NAMESPACE",
    "SCORED",
    "evidence_to_statement",
    "evidence_to_statements",
    "statement_id",
]

#: Namespace of the statement ids (fixed forever: changing it changes every fixture).
NAMESPACE = uuid.UUID("6b1e0a8e-3c1d-5b7e-9a41-2f0c7d9e8a10")
#: The verb of every evidence statement (ADL vocabulary).
SCORED = {"id": "http://adlnet.gov/expapi/verbs/scored", "display": {"en-US": "scored"}}
#: Activity id prefix for a competency given as ``X.Y`` or a uuid (not a URL).
COMPETENCY_ACTIVITY = "https://ceredis.net/xapi/activities/competency/"


def statement_id(record: Mapping[str, Any]) -> str:
    """The deterministic statement id of an evidence record."""
    name = json.dumps([record.get("agentId"), record.get("evidenceId")], ensure_ascii=False)
    return str(uuid.uuid5(NAMESPACE, name))


def evidence_to_statement(
    record: Mapping[str, Any], *, home_page: str = DEFAULT_HOME_PAGE
) -> dict[str, Any]:
    """One evidence record (scoring.md §1 fields) as an xAPI statement.

    A field missing from *record* is missing from the statement, so an incomplete
    record makes an incomplete statement (for invalid-data tests). Numbers in the
    result are ``int`` or ``Decimal``: serialise with ``ledger.canonical`` or any
    encoder that writes a Decimal's own digits.
    """
    statement: dict[str, Any] = {"id": statement_id(record), "verb": SCORED}
    agent = record.get("agentId")
    if isinstance(agent, str) and agent.startswith("mailto:"):
        statement["actor"] = {"objectType": "Agent", "mbox": agent}
    elif agent is not None:
        statement["actor"] = {
            "objectType": "Agent",
            "account": {"homePage": home_page, "name": agent},
        }

    extensions: dict[str, Any] = {}
    competency = record.get("competencyId")
    if isinstance(competency, str) and competency.startswith(("https://", "http://")):
        statement["object"] = {"objectType": "Activity", "id": competency}
    elif competency is not None:
        extensions[COMPETENCY] = competency
        statement["object"] = {
            "objectType": "Activity",
            "id": COMPETENCY_ACTIVITY + urllib.parse.quote(str(competency), safe=""),
        }
    if "rawScore" in record:
        statement["result"] = _result(record["rawScore"])
    if "timestamp" in record:
        statement["timestamp"] = record["timestamp"]
    for field, iri in (
        ("evidenceId", EVIDENCE_ID),
        ("evidenceType", EVIDENCE_TYPE),
        ("context", CONTEXT),
        ("validator", VALIDATOR),
    ):
        if record.get(field) is not None:
            extensions[iri] = record[field]
    if extensions:
        statement["context"] = {"extensions": dict(sorted(extensions.items()))}
    return statement


def evidence_to_statements(
    records: Iterable[Mapping[str, Any]], *, home_page: str = DEFAULT_HOME_PAGE
) -> list[dict[str, Any]]:
    """Every record as a statement, in the given order."""
    return [evidence_to_statement(r, home_page=home_page) for r in records]


def _result(score: Any) -> dict[str, Any]:
    """``result.score`` on 0–100 with ``scaled``, plus the score's exact decimal text."""
    if isinstance(score, float) and math.isfinite(score):
        score = Decimal(repr(score))
    if isinstance(score, bool) or not isinstance(score, int | Decimal):
        return {"score": {"raw": score}}  # deliberately invalid data, passed on
    exact = Decimal(score)
    return {
        "score": {"raw": score, "min": 0, "max": 100, "scaled": exact.scaleb(-2)},
        "extensions": {RAW_SCORE_TEXT: str(score)},
    }
