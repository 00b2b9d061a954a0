"""The engine: sources, scoring and stores put together, for one learner or a cohort."""

from __future__ import annotations

from typing import Any

from ceredis.referential import Referential, bundled_referential
from ceredis.scoring import evaluate
from ceredis.sources import prepare_source

__all__ = ["evaluate_agent"]


def evaluate_agent(
    agent_id: str, source: str | None = None, referential: Referential | None = None
) -> dict[str, Any]:
    """Fetch one learner's evidence from *source* (default: the bundled cohort) and score it."""
    referential = referential or bundled_referential()
    client = prepare_source(source).open()
    try:
        return evaluate(agent_id, client.fetch(agent_id), referential)
    finally:
        client.close()
