"""An id the bundled cohort does not list is an ERROR "not in the source"; a listed learner
without evidence stays SKIPPED; an evidence export, which cannot name learners without
evidence, keeps SKIPPED for any id it has no line of (through the real CLI)."""

from __future__ import annotations

from ceredis.cli import main
from ledger.reader import read_ledger


def statuses(ledger) -> dict[str, tuple[str, str | None]]:
    out = {}
    for record in read_ledger(ledger):
        if record.kind == "record":
            result = record.body["result"]
            out[record.body["agentId"]] = (result["status"], result.get("error"))
    return out


def test_an_unknown_id_in_the_bundled_cohort_is_an_error(tmp_path, capsys):
    """--agent with a misspelt id: ERROR naming it, exit 1; known learners are unaffected."""
    ledger = tmp_path / "run.jsonl"
    argv = ["batch", "--quiet", "--ledger", str(ledger)]
    argv += ["--database", f"sqlite:///{tmp_path / 's.sqlite'}"]
    code = main([*argv, "--agent", "L00001", "--agent", "L0001", "--agent", "L00015"])
    assert code == 1, capsys.readouterr().err
    found = statuses(ledger)
    assert found["L00001"][0] == "OK"
    assert found["L00015"][0] == "SKIPPED"  # in the roster, no evidence: not an error
    status, error = found["L0001"]
    assert status == "ERROR" and "'L0001' is not in the source" in error


def test_an_export_cannot_tell_unknown_from_no_evidence(tmp_path, capsys):
    """A file source lists only learners with evidence: an absent id stays SKIPPED."""
    out = tmp_path / "c.jsonl"
    assert main(["sample", "--agents", "20", "--out", str(out)]) == 0
    ledger = tmp_path / "run.jsonl"
    argv = ["batch", "--quiet", "--source", str(out), "--ledger", str(ledger)]
    argv += ["--database", f"sqlite:///{tmp_path / 's.sqlite'}"]
    assert main([*argv, "--agent", "L00001", "--agent", "NOBODY"]) == 0
    assert statuses(ledger)["NOBODY"][0] == "SKIPPED"
