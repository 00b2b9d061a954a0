"""End to end: the batch engine scores the bundled cohort from the JSONL file and from
the CaSS double (encrypted, with injected faults) to the same results root."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceredis.engine import run_batch
from ceredis.plan import plan_batch
from ceredis.sources.files import bundled_cohort, bundled_roster, read_evidence_file
from doubles.cass_double import CassDouble, Fault


def test_same_results_root_from_the_file_and_from_cass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, competencies, engine_key
):
    def batch(source: str, name: str):
        plan = plan_batch(
            agents_file=bundled_roster(),
            source=source,
            database=f"sqlite:///{tmp_path / name}.sqlite",
            ledger=tmp_path / f"{name}.jsonl",
            workers=2,
        )
        return run_batch(plan)

    from_file = batch(str(bundled_cohort()), "file")

    records = [dict(r.fields) for _, agent, r in read_evidence_file(bundled_cohort()) if agent]
    with CassDouble.from_evidence(
        records, competencies=competencies, engine_key=engine_key, seed=5
    ) as cass:
        cass.add_fault(
            Fault.proxy(503, route="search", probability=0.04),
            Fault.reset(after_bytes=200, route="search", probability=0.02),
        )
        for name, value in cass.source_env(tmp_path / "engine.pem").items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("CEREDIS_SOURCE_RATE", "1000")
        from_cass = batch(cass.source_uri, "cass")
        faulted = sum(1 for e in cass.journal if e.faults)

    assert faulted > 5
    assert (from_cass.ok, from_cass.skipped, from_cass.failed) == (
        from_file.ok,
        from_file.skipped,
        from_file.failed,
    )
    assert from_cass.results_root == from_file.results_root
