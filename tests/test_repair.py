"""``batch --retry-failed``: the ERROR learners of a finished run, scored again as a new run."""

from __future__ import annotations

import sqlite3

from ceredis.cli import main
from ceredis.repair import plan_retry_failed
from ceredis.sources.files import file_sha256
from ledger.verify import verify_ledger
from tests.builders import every_competency, record
from tests.test_files import write_jsonl


def _records(ledger):
    from ledger.reader import read_ledger

    return [r.body for r in read_ledger(ledger) if r.kind == "record"]


def test_retry_failed_rescores_exactly_the_error_learners(tmp_path, referential, capsys):
    """A run with two ERROR learners is repaired by a new run of exactly those two: its
    header names the run it repairs, and the profile table then holds their results."""
    good = [
        r for agent in ("L1", "L2", "L3", "L4") for r in every_competency(referential, 70, agent)
    ]
    broken = [r for r in good if r["agentId"] not in ("L2", "L4")]
    broken += [record("1.1", "P9", 50, agent="L2"), record("1.2", "P1", 500, agent="L4")]
    database = f"sqlite:///{tmp_path / 'store.sqlite'}"
    ledger, repair = tmp_path / "run.jsonl", tmp_path / "repair.jsonl"
    first = ["batch", "--quiet", "--database", database, "--workers", "2"]
    agents = ["--agent", "L1", "--agent", "L2", "--agent", "L3", "--agent", "L4"]
    source = write_jsonl(tmp_path / "broken.jsonl", broken)
    assert main([*first, *agents, "--source", str(source), "--ledger", str(ledger)]) == 1
    fixed = write_jsonl(tmp_path / "fixed.jsonl", good)

    argv = ["batch", "--quiet", "--retry-failed", str(ledger), "--source", str(fixed)]
    assert main([*argv, "--ledger", str(repair)]) == 0

    original = verify_ledger(ledger).header
    header = verify_ledger(repair).header
    assert header["repairs"] == {"runId": original["runId"], "ledgerSha256": file_sha256(ledger)}
    assert header["runId"] != original["runId"]
    assert header["selection"]["agents"] == ["L2", "L4"]
    assert header["store"] == original["store"]  # the run's database by default
    assert [(b["agentId"], b["result"]["status"]) for b in _records(repair)] == [
        ("L2", "OK"),
        ("L4", "OK"),
    ]
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        profiles = dict(db.execute("SELECT agent_id, run_id FROM ceredis_profile"))
    assert profiles == {
        "L1": original["runId"],
        "L2": header["runId"],
        "L3": original["runId"],
        "L4": header["runId"],
    }
    assert "repairs" not in original  # an ordinary run's header is unchanged
    planned = plan_retry_failed(
        ledger, source=str(fixed), executor="dask", scheduler="tcp://127.0.0.1:8786"
    )  # the executor flags reach the repair run, as they reach a resume
    assert (planned.executor, planned.scheduler) == ("dask", "tcp://127.0.0.1:8786")


def test_retry_failed_refuses_an_unfinished_run_or_one_without_errors(tmp_path, capsys):
    """Nothing to repair, or a run still to be resumed: exit 2 with what to do."""
    database = f"sqlite:///{tmp_path / 'store.sqlite'}"
    ledger = tmp_path / "ok.jsonl"
    argv = ["batch", "--quiet", "--database", database, "--agent", "L00001"]
    assert main([*argv, "--ledger", str(ledger)]) == 0
    assert main(["batch", "--retry-failed", str(ledger)]) == 2
    assert "has no ERROR learner to retry" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished.jsonl"
    unfinished.write_bytes(b"".join(ledger.read_bytes().splitlines(keepends=True)[:-1]))
    assert main(["batch", "--retry-failed", str(unfinished)]) == 2
    assert f"--resume {unfinished}" in " ".join(capsys.readouterr().err.split())
    assert main(["batch", "--retry-failed", str(ledger), "--resume", str(ledger)]) == 2
