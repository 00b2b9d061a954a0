"""CEREDIS engine: learners' evidence to CEREDIS scores and CECRL levels.

The public API, imported lazily so that ``import ceredis.scoring`` stays free of I/O::

    evaluate(agent_id, records, referential)        # one learner (pure)
    bundled_referential() / load_referential(path)  # the rules
    plan_batch(...) -> BatchPlan; run_batch(plan)   # a cohort on a process pool
    plan_resume(ledger)                             # finish a killed run
    audit_ledger(path, database=None)               # verify + replay
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "evaluate": "ceredis.scoring",
    "bundled_referential": "ceredis.referential",
    "load_referential": "ceredis.referential",
    "evaluate_agent": "ceredis.engine",
    "plan_batch": "ceredis.plan",
    "plan_resume": "ceredis.plan",
    "run_batch": "ceredis.engine",
    "audit_ledger": "ceredis.audit",
    "write_cohort": "ceredis.sample",
    "CeredisError": "ceredis.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ceredis' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
