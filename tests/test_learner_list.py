"""The ledger binds its learner list (issue 10, item 2): a forged, deleted or duplicated
learner is found even in a ledger rewritten with every hash, count and root made valid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ceredis.audit import audit_ledger
from ceredis.cli import main
from ceredis.engine import run_batch
from ceredis.plan import plan_batch
from ceredis.referential import bundled_referential
from ceredis.sample import write_cohort
from tests.resealer import read_parts, renamed, reseal


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learners")
    return folder, write_cohort(folder / "c.jsonl", bundled_referential(), 12, 8, 6)


def _batch(cohort, name: str, **choice) -> Path:
    folder, files = cohort
    plan = plan_batch(
        source=str(files.evidence),
        workers=1,
        database=f"sqlite:///{folder / (name + '.sqlite')}",
        ledger=folder / f"{name}.jsonl",
        **choice,
    )
    run_batch(plan)
    return plan.ledger


@pytest.fixture(scope="module")
def roster_run(cohort):
    return _batch(cohort, "roster", agents_file=cohort[1].roster)


@pytest.fixture(scope="module")
def agents_run(cohort):
    return _batch(cohort, "agents", agents=["L00002", "L00004", "L00006"])


@pytest.fixture(scope="module")
def all_run(cohort):
    return _batch(cohort, "all", all_agents=True)


def _forge(ledger: Path, target: Path, how: str) -> tuple[int, str]:
    """Rewrite *ledger* with one learner forged, deleted or duplicated; every hash, count
    and root recomputed. Returns the line and learner a finding must name."""
    header, bodies, footer = read_parts(ledger)
    agents = [json.loads(b)["agentId"] for b in bodies]
    if how == "forged":
        bodies.insert(2, renamed(bodies[1], "L99999"))
        named = (4, "L99999")
    elif how == "deleted":
        del bodies[1]
        named = (3, agents[1])
    else:
        bodies.insert(2, bodies[1])
        named = (4, agents[1])
    reseal(target, header, bodies, footer)
    return named


def _names(audit, line: int, agent: str) -> bool:
    return any(f.line == line and f.agent_id == agent for f in audit.findings)


@pytest.mark.parametrize("how", ["forged", "deleted", "duplicated"])
def test_a_resealed_learner_change_is_found_with_the_roster(roster_run, tmp_path, how):
    """The roster on disk names the learner forged, deleted or copied."""
    line, agent = _forge(roster_run, tmp_path / "forged.jsonl", how)
    audit = audit_ledger(tmp_path / "forged.jsonl")
    assert not audit.ok
    assert _names(audit, line, agent), [str(f) for f in audit.findings]
    assert any(f.kind == "learner list mismatch" and f.line == 1 for f in audit.findings)


@pytest.mark.parametrize("how", ["forged", "deleted", "duplicated"])
def test_a_resealed_learner_change_is_found_from_the_header_alone(roster_run, tmp_path, how):
    """With the roster gone, the header's list hash and count still tell, and a note says
    which learner cannot be named."""
    folder = tmp_path / "moved"
    folder.mkdir()
    header = read_parts(roster_run)[0]
    roster = Path(header["selection"]["file"])
    _forge(roster_run, folder / "forged.jsonl", how)
    hidden = roster.with_suffix(".hidden")
    shutil.move(roster, hidden)
    try:
        audit = audit_ledger(folder / "forged.jsonl")
    finally:
        shutil.move(hidden, roster)
    assert not audit.ok
    assert any(f.kind == "learner list mismatch" for f in audit.findings)
    assert any("is not on disk" in note for note in audit.notes)


@pytest.mark.parametrize("how", ["forged", "deleted", "duplicated"])
def test_an_agent_run_binds_its_ids_in_the_header(agents_run, tmp_path, how):
    """--agent ids are in the header: each change is named without any file."""
    line, agent = _forge(agents_run, tmp_path / "forged.jsonl", how)
    code = main(["verify", str(tmp_path / "forged.jsonl"), "--json"])
    assert code == 1
    audit = audit_ledger(tmp_path / "forged.jsonl")
    assert _names(audit, line, agent), [str(f) for f in audit.findings]


def test_an_all_run_is_bound_by_its_footer(all_run, tmp_path):
    """--all: the footer binds the list; a copy rewritten with the old footer is found, and
    the note says a rewrite of the footer is caught only by an external anchor."""
    assert audit_ledger(all_run).ok and audit_ledger(all_run).learner_list == "footer"
    header, bodies, footer = read_parts(all_run)
    target = tmp_path / "dup.jsonl"
    reseal(target, header, [*bodies, bodies[0]], {k: v for k, v in footer.items()})
    audit = audit_ledger(target)
    assert _names(audit, len(bodies) + 2, json.loads(bodies[0])["agentId"])
    assert any("bound by the footer only" in note for note in audit.notes)


def test_an_old_ledger_without_the_binding_verifies_with_a_note(roster_run, tmp_path):
    """A header and footer written before the binding: still OK, with a note."""
    header, bodies, footer = read_parts(roster_run)

    def unbind(h):
        del h["selection"]["learners"]

    old_footer = {k: v for k, v in footer.items() if k != "learners"}
    reseal(tmp_path / "old.jsonl", header, bodies, old_footer, edit_header=unbind)
    audit = audit_ledger(tmp_path / "old.jsonl")
    assert audit.ok, [str(f) for f in audit.findings]
    assert audit.learner_list == "not bound"
    assert any("learner list is not bound" in note for note in audit.notes)


def test_untouched_runs_verify(roster_run, agents_run):
    for ledger in (roster_run, agents_run):
        audit = audit_ledger(ledger)
        assert audit.ok and audit.learner_list == "header", [str(f) for f in audit.findings]
