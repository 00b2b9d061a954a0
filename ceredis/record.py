"""The ledger record of one learner: what the engine hashes and what ``verify`` replays.

A record is ``{"agentId", "status", "inputs", "result"}``. ``inputs`` holds what the
result was computed from: the normalised evidence (sorted, so the order a source
delivers it in never changes a hash) for a scored or skipped learner, the submitted
records for a learner with invalid evidence, and ``null`` when the learner could not be
scored at all (source down, store conflict, dead worker) — such a record is not
replayable. Nothing time-, host- or worker-dependent goes in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ceredis.referential import Referential
from ceredis.scoring import evaluate_submitted

__all__ = ["learner_record", "replay_record", "score_learner"]


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
