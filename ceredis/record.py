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
from typing import Any

from ceredis.outcome import Status
from ceredis.referential import Referential
from ceredis.scoring import evaluate_submitted
from ledger.canonical import Fragment, fast_canonical

__all__ = ["EncodedRecord", "encode_record", "learner_record", "replay_record", "score_learner"]


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
