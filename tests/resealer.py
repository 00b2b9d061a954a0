"""A forger for tests: rewrite a ledger's records with every hash, the chain, the footer's
counts, learner list and ``resultsRoot`` made valid again, through the public ``ledger`` API.

What such a rewrite keeps is the header (unless told otherwise): so only what the header
binds, a replay, the roster on disk or an external anchor can tell it.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ceredis.outcome import Counts
from ledger import LedgerWriter, canonical, decode, read_ledger

Body = dict[str, Any]


def read_parts(source: Path) -> tuple[Body, list[bytes], Body]:
    """The header's meta, every record's canonical body, the footer's meta."""
    lines = list(read_ledger(source))
    return lines[0].body["meta"], [line.body_bytes for line in lines[1:-1]], lines[-1].body["meta"]


def reseal(
    target: Path,
    header: Body,
    bodies: list[bytes],
    footer: Body,
    edit_header: Callable[[Body], None] | None = None,
) -> None:
    """Write *bodies* as a complete ledger at *target*, footer counts and list recomputed."""
    header = copy.deepcopy(header)
    if edit_header:
        edit_header(header)
    counts = Counts()
    agents = []
    with LedgerWriter.create(target, header, fsync_every=1 << 30, fsync_interval=3600) as writer:
        for body in bodies:
            parsed = decode(body)
            counts.add(parsed["result"]["status"])
            agents.append(parsed["agentId"])
            writer.append_canonical(body, check=False)  # decoded above: canonical
        meta = {**footer, "counts": counts.to_json()}
        if "learners" in footer:
            meta["learners"] = learner_list(agents)
        writer.finish(meta)


def learner_list(agents: list[str]) -> Body:
    """The list binding, computed here independently: SHA-256 of each id and a newline."""
    digest = hashlib.sha256("".join(f"{a}\n" for a in agents).encode()).hexdigest()
    return {"count": len(agents), "sha256": digest}


def renamed(body: bytes, agent: str) -> bytes:
    """A record body moved to another learner id, consistently (a forged learner whose
    replay agrees with itself)."""
    parsed = decode(body)
    former = parsed["agentId"]
    parsed["agentId"] = agent
    parsed["result"]["agentId"] = agent
    for evidence in (parsed.get("inputs") or {}).get("evidence", []):
        evidence["agentId"] = agent
        evidence["evidenceId"] = evidence["evidenceId"].replace(former, agent, 1)
    return canonical(parsed)
