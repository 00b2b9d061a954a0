"""The ledger record of one learner: what the engine hashes and what ``verify`` replays.

A record is ``{"agentId", "status", "inputs", "result"}``. ``inputs`` holds what the
result was computed from: the normalised evidence (sorted, so the order a source
delivers it in never changes a hash) for a scored or skipped learner, the submitted
records for a learner with invalid evidence, and ``null`` when the learner could not be
scored at all (source down, store conflict, dead worker) — such a record is not
replayable. Nothing time-, host- or worker-dependent goes in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring as _string  # canonical's own string form
from typing import Any, NamedTuple

from ceredis.evidence import Evidence, RawEvidence, in_referential, plain_evidence, submitted
from ceredis.outcome import Status
from ceredis.referential import Referential
from ceredis.scoring import evaluate_evidence, evaluate_submitted
from ledger.canonical import Fragment, fast_canonical

__all__ = [
    "EncodedRecord",
    "Prechecked",
    "encode_record",
    "evidence_inputs",
    "learner_record",
    "replay_record",
    "score_delivered",
    "score_learner",
]


@dataclass(frozen=True)
class EncodedRecord:
    """A learner's ledger record and the JSON stored beside it, each part encoded once: the
    stored JSON columns are the very bytes embedded in the record."""

    record: bytes  # canonical ledger record body: what the ledger holds and hashes
    result: str  # canonical JSON of the whole result
    domain_scores: str | None  # canonical JSON, OK results only
    competencies: str | None  # canonical JSON, OK results only
    content_hash: str  # SHA-256 (hex) of ``record``


def score_learner(
    agent_id: str,
    records: Sequence[Mapping[str, Any]],
    referential: Referential,
    *,
    engine_version: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score submitted records; return the result and the inputs to record with it."""
    result, evidence = evaluate_submitted(
        agent_id, records, referential, engine_version=engine_version
    )
    if evidence is None:
        return result, {"submitted": list(records)}
    return result, {"evidence": [e.to_json() for e in evidence]}


class Prechecked(NamedTuple):
    """A learner's records as an evidence index judged them once per file: what
    :func:`~ceredis.evidence.prechecked_evidence` keeps of them, and the canonical bytes
    of that evidence's ledger inputs (:func:`evidence_inputs`)."""

    evidence: list[Evidence]
    inputs: bytes


def score_delivered(
    agent_id: str,
    records: Sequence[RawEvidence],
    referential: Referential,
    *,
    engine_version: str,
) -> tuple[dict[str, Any], Any]:
    """:func:`score_learner` of records as a source delivered them: plainly valid ones in
    one pass, their inputs as canonical bytes (:func:`evidence_inputs`); any other
    through ``submitted``. Records that carry a :class:`Prechecked` form (``records.
    prechecked``) are scored from it once the referential knows their competencies."""
    prechecked = getattr(records, "prechecked", None)
    if prechecked is not None and in_referential(prechecked.evidence, referential):
        result = evaluate_evidence(
            agent_id, prechecked.evidence, referential, engine_version=engine_version
        )
        return result, Fragment(prechecked.inputs)
    evidence = plain_evidence(agent_id, records, referential)
    if evidence is None:
        forms = [submitted(r) for r in records]
        return score_learner(agent_id, forms, referential, engine_version=engine_version)
    result = evaluate_evidence(agent_id, evidence, referential, engine_version=engine_version)
    return result, evidence_inputs(evidence)


def evidence_inputs(evidence: Sequence[Evidence]) -> Any:
    """The canonical bytes of ``{"evidence": [e.to_json() for e in evidence]}`` as a
    :class:`Fragment`, written straight from the tuples (every record repeats one shape);
    the dict itself when a string cannot be encoded, for the general encoder to refuse."""
    text = '{"evidence":[' + ",".join(map(_evidence_text, evidence)) + "]}"
    try:
        return Fragment(text.encode("utf-8"))
    except UnicodeEncodeError:
        return {"evidence": [e.to_json() for e in evidence]}


def _evidence_text(e: Evidence) -> str:
    """One evidence record's canonical text: its keys in code-point order."""
    context = "" if e.context is None else f'"context":{_string(e.context)},'
    validator = "" if e.validator is None else f',"validator":{_string(e.validator)}'
    return (
        f'{{"agentId":{_string(e.agent_id)},"competencyId":{_string(e.competency_id)},'
        f'{context}"evidenceId":{_string(e.evidence_id)},'
        f'"evidenceType":{_string(e.evidence_type)},"rawScore":{e.raw_score:f},'
        f'"timestamp":{_string(e.timestamp)}{validator}}}'
    )


def learner_record(
    agent_id: str, result: Mapping[str, Any], inputs: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The record body appended to the ledger for one learner."""
    return {"agentId": agent_id, "status": result["status"], "inputs": inputs, "result": result}


def replay_record(body: Mapping[str, Any], referential: Referential) -> dict[str, Any] | None:
    """Recompute a record from its own inputs; None when it has none (not replayable).

    The recorded engine version is kept, so a newer engine replays an older ledger and
    only a change in the *rules' outcome* shows as a mismatch.
    """
    inputs = body.get("inputs")
    if inputs is None:
        return None
    if "evidence" in inputs:
        records = [{"fields": e, "where": ""} for e in inputs["evidence"]]
    else:
        records = inputs["submitted"]
    recorded = body.get("result") or {}
    result, new_inputs = score_learner(
        body["agentId"], records, referential, engine_version=recorded.get("engineVersion", "")
    )
    return learner_record(body["agentId"], result, new_inputs)


def encode_record(
    agent_id: str, result: Mapping[str, Any], inputs: Mapping[str, Any] | None
) -> EncodedRecord:
    """Encode one learner's record for the ledger and the result store."""
    ok = result["status"] == Status.OK
    domains = Fragment(fast_canonical(result["domainScores"])) if ok else None
    competencies = Fragment(fast_canonical(result["competencies"])) if ok else None
    encoded = Fragment(
        fast_canonical({**result, "domainScores": domains, "competencies": competencies})
        if ok
        else fast_canonical(result)
    )
    record = fast_canonical({**learner_record(agent_id, result, inputs), "result": encoded})
    return EncodedRecord(
        record=record,
        result=encoded.decode(),
        domain_scores=domains.decode() if domains is not None else None,
        competencies=competencies.decode() if competencies is not None else None,
        content_hash=hashlib.sha256(record).hexdigest(),
    )
