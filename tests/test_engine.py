"""The batch engine with real processes: determinism, crash and resume, dead workers."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ceredis.audit import audit_ledger
from ceredis.engine import ProgressHooks, run_batch
from ceredis.plan import plan_batch, plan_resume
from ceredis.referential import bundled_referential
from ceredis.sample import write_cohort
from ceredis.stores import parse_store_url
from ledger import verify_ledger
from ledger.reader import read_ledger


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, Path]:
    """A 1,000-learner sample (evidence file and roster)."""
    folder = tmp_path_factory.mktemp("cohort")
    files = write_cohort(
        folder / "cohort.jsonl", bundled_referential(), 1000, seed=11, evidence_per_learner=30
    )
    return files.evidence, files.roster


def run(tmp_path: Path, cohort, workers: int, name: str, database: str | None = None, **extra):
    evidence, roster = cohort
    plan = plan_batch(
        agents_file=roster,
        source=str(evidence),
        workers=workers,
        database=database or f"sqlite:///{tmp_path / (name + '.sqlite')}",
        ledger=tmp_path / f"{name}.jsonl",
        **extra,
    )
    return run_batch(plan), plan


def records(ledger: Path) -> list[bytes]:
    return [r.body_bytes for r in read_ledger(ledger) if r.kind == "record"]


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory):
    """An uninterrupted one-worker run: the root every other run must reproduce."""
    folder = tmp_path_factory.mktemp("reference")
    report, plan = run(folder, cohort, 1, "reference")
    return report, plan


@pytest.mark.parametrize("workers", [2, 4, 8])
def test_results_root_does_not_depend_on_the_worker_count(tmp_path, cohort, reference, workers):
    """--workers 1, 2, 4 and 8 give byte-identical records and the same resultsRoot."""
    expected, plan = reference
    report, other = run(tmp_path, cohort, workers, f"w{workers}")
    assert (report.total, report.failed) == (1000, 0)
    assert report.results_root == expected.results_root
    assert records(other.ledger) == records(plan.ledger)


def test_report_and_counts(reference):
    """The JSON report has the documented fields and agrees with the ledger footer."""
    import json

    report, plan = reference
    data = json.loads(plan.report.read_text())
    assert {
        "startedAt",
        "finishedAt",
        "total",
        "concurrency",
        "ok",
        "skipped",
        "failed",
        "details",
    } <= set(data)
    assert (data["total"], data["ok"] + data["skipped"] + data["failed"]) == (1000, 1000)
    assert data["skipped"] > 0 and data["resultsRoot"] == report.results_root
    first = data["details"][0]
    assert set(first) == {
        "agentId",
        "status",
        "ceredisScore",
        "bandLevel",
        "cecrlLevel",
        "domainScores",
        "workerId",
        "durationMs",
        "error",
    }
    assert verify_ledger(plan.ledger).footer["counts"] == {
        "total": 1000,
        "ok": data["ok"],
        "skipped": data["skipped"],
        "failed": data["failed"],
    }


@pytest.mark.slow
def test_killed_parent_then_resume_reproduces_the_root(tmp_path, cohort, reference):
    """A batch SIGKILLed at 5 random points and resumed ends with the same root, no duplicates."""
    expected, _ = reference
    evidence, roster = cohort
    rng = random.Random(2026)
    for trial in range(5):
        ledger = tmp_path / f"killed{trial}.jsonl"
        database = f"sqlite:///{tmp_path / f'killed{trial}.sqlite'}"
        env = {**os.environ, "CEREDIS_DATABASE_URL": database}
        with subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ceredis",
                "batch",
                "--quiet",
                "--workers",
                "2",
                "--source",
                str(evidence),
                "--file",
                str(roster),
                "--ledger",
                str(ledger),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        ) as child:
            kill_after = rng.randrange(5, 950)  # records in the ledger when the parent dies
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and child.poll() is None:
                if ledger.exists() and ledger.read_bytes().count(b"\n") > kill_after:
                    child.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.005)
            child.wait(30)
            assert child.returncode == -signal.SIGKILL, child.stderr.read()
        assert not verify_ledger(ledger).complete

        resumed = run_batch(plan_resume(ledger, database=database, workers=2))
        assert resumed.total == 1000 and resumed.results_root == expected.results_root
        store = parse_store_url(database).open()
        run_id = verify_ledger(ledger).header["runId"]
        rows = list(store.iter_results(run_id))
        store.close()
        assert len(rows) == len({r.agent_id for r in rows}) == 1000
        assert audit_ledger(ledger, database).ok


class KillOneWorker(ProgressHooks):
    """Kills the worker that produced the 200th result, once, from the parent."""

    def __init__(self) -> None:
        self.seen = 0
        self.killed: int | None = None

    def advance(self, outcome) -> None:
        self.seen += 1
        if self.seen == 200 and self.killed is None:
            self.killed = outcome.worker
            os.kill(outcome.worker, signal.SIGKILL)


def test_a_killed_worker_never_hangs_the_batch(tmp_path, cohort, reference):
    """SIGKILL on a worker mid-batch: the batch finishes in bounded time with every learner."""
    expected, plan_ref = reference
    evidence, roster = cohort
    plan = plan_batch(
        agents_file=roster,
        source=str(evidence),
        workers=2,
        database=f"sqlite:///{tmp_path / 'k.sqlite'}",
        ledger=tmp_path / "k.jsonl",
    )
    watcher = KillOneWorker()
    finished = threading.Event()
    outcome: dict = {}

    def target() -> None:
        outcome["report"] = run_batch(plan, watcher)
        finished.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert finished.wait(120), "the batch hung after a worker was killed"
    assert watcher.killed is not None
    report = outcome["report"]
    assert report.total == 1000
    assert [r.body_bytes for r in read_ledger(plan.ledger) if r.kind == "record"] == records(
        plan_ref.ledger
    )
    assert report.results_root == expected.results_root


@pytest.mark.postgres
def test_postgres_connections_are_opened_in_the_workers(tmp_path, cohort, pg_url, pg_dsn):
    """During a PostgreSQL batch the server sees exactly N ceredis connections (the parent
    holds none while the pool runs), so none can have been inherited through fork."""
    import psycopg

    database = pg_url.rsplit("/", 1)[1]
    counts: list[int] = []

    class Count(ProgressHooks):
        def advance(self, outcome) -> None:
            if len(counts) < 5 and outcome.agent_id.endswith("0"):
                with psycopg.connect(pg_dsn, autocommit=True) as admin:
                    counts.append(
                        admin.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                            "application_name = 'ceredis'",
                            (database,),
                        ).fetchone()[0]
                    )

    evidence, roster = cohort
    plan = plan_batch(
        agents_file=roster,
        source=str(evidence),
        workers=3,
        database=pg_url,
        ledger=tmp_path / "pg.jsonl",
    )
    report = run_batch(plan, Count())
    assert report.total == 1000 and report.failed == 0
    assert counts and set(counts) == {3}
    assert audit_ledger(plan.ledger, pg_url).ok


def test_an_unreachable_database_fails_before_any_work(tmp_path, cohort):
    """A database that does not answer is a clear error at planning: no ledger, no report."""
    from ceredis.errors import StoreError

    evidence, roster = cohort
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL at postgresql://"):
        plan_batch(
            agents_file=roster,
            source=str(evidence),
            database="postgresql://postgres@127.0.0.1:1/ceredis",
            ledger=tmp_path / "never.jsonl",
        )
    assert list(tmp_path.iterdir()) == []


def test_a_conflicting_stored_result_fails_only_that_learner(tmp_path):
    """Re-scoring a run whose evidence changed for one learner: that learner is ERROR (the
    stored row is kept, never overwritten); the others are idempotent no-ops."""
    from dataclasses import replace

    files = write_cohort(
        tmp_path / "c.jsonl", bundled_referential(), 20, seed=4, evidence_per_learner=10
    )
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    first = plan_batch(
        agents_file=files.roster,
        source=str(files.evidence),
        workers=2,
        database=database,
        ledger=tmp_path / "first.jsonl",
    )
    run_batch(first)
    lines = files.evidence.read_text().splitlines()
    changed = next(i for i, line in enumerate(lines) if '"agentId":"L00002"' in line)
    lines[changed] = lines[changed].replace('"context":"', '"context":"revised ', 1)
    edited = tmp_path / "edited.jsonl"
    edited.write_text("\n".join(lines) + "\n")
    again = replace(
        plan_batch(
            agents_file=files.roster,
            source=str(edited),
            workers=2,
            database=database,
            ledger=tmp_path / "again.jsonl",
        ),
        run_id=first.run_id,
        started_at=first.started_at,
    )
    report = run_batch(again)
    failed = [
        r.body
        for r in read_ledger(again.ledger)
        if r.kind == "record" and r.body["status"] == "ERROR"
    ]
    assert report.failed == 1 and [b["agentId"] for b in failed] == ["L00002"]
    assert failed[0]["result"]["error"].startswith(
        f"result store: a different result is already stored for run {first.run_id}"
    )
    store = parse_store_url(database).open()
    rows = {r.agent_id: r.content_hash for r in store.iter_results(first.run_id)}
    store.close()
    kept = {
        r.body["agentId"]: r.content_hash for r in read_ledger(first.ledger) if r.kind == "record"
    }
    assert rows == kept
