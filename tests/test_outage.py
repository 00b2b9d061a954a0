"""Outages pause the batch: a real PostgreSQL cluster of the test's own is stopped mid-batch.

The cluster is created here (initdb + pg_ctl in a temporary directory, on a free port),
never the shared test server. A short outage is waited out with no learner in ERROR and
the same resultsRoot as an uninterrupted run into SQLite; one beyond the outage budget
stops the batch (exit 4), and ``--resume`` then finishes it with the same root.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ceredis.engine import ProgressHooks, run_batch
from ceredis.errors import SourceError, SourceUnavailable
from ceredis.outage import Patience, store_outage
from ceredis.plan import plan_batch
from ceredis.referential import bundled_referential
from ceredis.sample import write_cohort
from ceredis.sources.files import read_evidence_file
from ceredis.sources.http import HttpClient
from ceredis.sources.retry import RetryPolicy
from ceredis.stores import parse_store_url
from doubles.cass_double import CassDouble, Fault
from doubles.kbac import generate_key
from ledger.verify import verify_ledger

LEARNERS = 2000


class Cluster:
    """A throwaway PostgreSQL cluster, run as the ``postgres`` OS user when we are root."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        self.bin = Path(bins[-1]).parent if bins else Path(shutil.which("initdb") or "").parent
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_user, *command], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        data = str(self.folder / "data")
        self._run(str(self.bin / "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-N")
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-o", options,
                  "-l", str(self.folder / "log"), "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast",
                  "-w", "stop")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster of this module's own (CI must have initdb: never skipped there)."""
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") and not shutil.which("initdb"):
        if os.environ.get("CI"):
            pytest.fail("CI must provide PostgreSQL's initdb and pg_ctl for the outage tests")
        pytest.skip("no initdb: cannot create a throwaway PostgreSQL cluster")
    folder = Path(tempfile.mkdtemp(prefix="ceredis-outage-"))  # postgres can traverse /tmp
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    cluster = Cluster(folder, _free_port())
    cluster.init()
    yield cluster
    with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
        cluster.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, Path]:
    """2,000 learners with small evidence (the run takes seconds, not minutes)."""
    folder = tmp_path_factory.mktemp("outage-cohort")
    files = write_cohort(
        folder / "cohort.jsonl", bundled_referential(), LEARNERS, seed=5, evidence_per_learner=8
    )
    return files.evidence, files.roster


@pytest.fixture(scope="module")
def reference_root(cohort, tmp_path_factory) -> str:
    """The resultsRoot of an uninterrupted run into SQLite."""
    folder = tmp_path_factory.mktemp("outage-reference")
    evidence, roster = cohort
    plan = plan_batch(
        agents_file=roster,
        source=str(evidence),
        workers=2,
        database=f"sqlite:///{folder / 'reference.sqlite'}",
        ledger=folder / "reference.jsonl",
    )
    report = run_batch(plan)
    assert (report.total, report.failed) == (LEARNERS, 0)
    return report.results_root


def _batch(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ceredis", "batch", "--quiet", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop_midway(cluster: Cluster, child: subprocess.Popen[str], ledger: Path, seconds: float):
    """Stop the cluster once a fifth of the learners are in the ledger; restart it later."""
    deadline = time.monotonic() + 60
    while child.poll() is None and time.monotonic() < deadline:
        if ledger.exists() and ledger.read_bytes().count(b"\n") > LEARNERS // 5:
            break
        time.sleep(0.01)
    assert child.poll() is None, "the batch ended before the outage could start"
    cluster.stop()
    time.sleep(seconds)
    cluster.start()


def _fresh_database(cluster: Cluster, name: str) -> str:
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    return cluster.url.rsplit("/", 1)[0] + f"/{name}"


def test_a_5_second_database_outage_is_waited_out(cluster, cohort, reference_root, tmp_path):
    """PostgreSQL stopped for 5 s mid-batch: 0 ERROR learners, the uninterrupted root."""
    evidence, roster = cohort
    database = _fresh_database(cluster, "short_outage")
    ledger = tmp_path / "short.jsonl"
    child = _batch("--workers", "2", "--source", str(evidence), "--file", str(roster),
                   "--database", database, "--ledger", str(ledger))  # fmt: skip
    started = time.monotonic()
    _stop_midway(cluster, child, ledger, 5)
    out, err = child.communicate(timeout=120)
    print(f"short outage: batch took {time.monotonic() - started:.1f} s\n{out}")
    assert child.returncode == 0, err
    assert "waiting for the database (" in out
    report = json.loads(ledger.with_suffix(".report.json").read_text())
    assert (report["total"], report["failed"]) == (LEARNERS, 0)
    assert report["resultsRoot"] == reference_root
    store = parse_store_url(database).open()
    rows = list(store.iter_results(verify_ledger(ledger).header["runId"]))
    store.close()
    assert len({r.agent_id for r in rows}) == len(rows) == LEARNERS
    assert not [r for r in rows if r.status == "ERROR"]


def test_an_outage_beyond_the_budget_stops_cleanly_then_resumes(
    cluster, cohort, reference_root, tmp_path
):
    """Budget 3 s, cluster stopped 10 s: exit 4, an incomplete ledger, the exact resume
    command; ``--resume`` then gives the uninterrupted root."""
    evidence, roster = cohort
    database = _fresh_database(cluster, "long_outage")
    ledger = tmp_path / "long.jsonl"
    child = _batch("--workers", "2", "--source", str(evidence), "--file", str(roster),
                   "--database", database, "--ledger", str(ledger),
                   env={"CEREDIS_OUTAGE_BUDGET": "3"})  # fmt: skip
    _stop_midway(cluster, child, ledger, 10)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 4, (out, err)
    assert f"python -m ceredis batch --resume {ledger}" in " ".join(err.split())
    assert "Traceback" not in err
    checked = verify_ledger(ledger)
    assert not checked.complete and not checked.problems and 0 < checked.count < LEARNERS
    resumed = subprocess.run(
        [sys.executable, "-m", "ceredis", "batch", "--quiet", "--resume", str(ledger)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(ledger.with_suffix(".report.json").read_text())
    assert (report["total"], report["failed"]) == (LEARNERS, 0)
    assert report["resultsRoot"] == reference_root


# -- the classifier, against real errors ---------------------------------------------------


def _raised(call) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("no error raised")


@pytest.mark.parametrize("state", ["08006", "08001", "57P01", "57P02", "57P03", "53300", "53100"])
def test_server_sqlstates_of_an_outage(cluster, state):
    """Errors the server really sends with these SQLSTATEs are outages."""
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        sql = f"DO $$ BEGIN RAISE EXCEPTION 'probe' USING ERRCODE = '{state}'; END $$"
        exc = _raised(lambda: conn.execute(sql))
    assert exc.sqlstate == state and store_outage(exc)


@pytest.mark.parametrize("state", ["23505", "23514", "22P02", "42P01", "40001", "57014"])
def test_a_row_or_statement_error_is_not_an_outage(cluster, state):
    """A constraint violation, bad data, a missing table, a serialization failure or a
    cancelled statement belongs to that write, not to the database's health."""
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        sql = f"DO $$ BEGIN RAISE EXCEPTION 'probe' USING ERRCODE = '{state}'; END $$"
        exc = _raised(lambda: conn.execute(sql))
    assert exc.sqlstate == state and not store_outage(exc)


def test_real_postgresql_connection_failures(cluster):
    """Refused, terminated and too-many-connections are outages; a wrong role is not."""
    refused = _raised(lambda: psycopg.connect(f"postgresql://postgres@127.0.0.1:{_free_port()}/x"))
    assert store_outage(refused)
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS capped")
        admin.execute("CREATE ROLE capped LOGIN CONNECTION LIMIT 0")
        victim = psycopg.connect(cluster.url, autocommit=True)
        admin.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
    terminated = _raised(lambda: victim.execute("SELECT 1"))
    assert terminated.sqlstate == "57P01" and store_outage(terminated)
    victim.close()
    base = cluster.url.rsplit("@", 1)[1]
    too_many = _raised(lambda: psycopg.connect(f"postgresql://capped@{base}"))
    assert "too many connections" in str(too_many) and store_outage(too_many)
    no_role = _raised(lambda: psycopg.connect(f"postgresql://nobody@{base}"))
    assert not store_outage(no_role)
    no_database = _raised(lambda: psycopg.connect(f"postgresql://postgres@{base}_missing"))
    assert not store_outage(no_database)


def test_real_sqlite_errors(tmp_path):
    """A locked database and a full one are outages; a constraint violation is not."""
    path = tmp_path / "probe.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (k integer PRIMARY KEY, v text)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    locked = _raised(lambda: other.execute("BEGIN IMMEDIATE"))
    assert "database is locked" in str(locked) and store_outage(locked)
    holder.execute("ROLLBACK")
    holder.execute("INSERT INTO t VALUES (1, 'x')")
    duplicate = _raised(lambda: holder.execute("INSERT INTO t VALUES (1, 'y')"))
    assert isinstance(duplicate, sqlite3.IntegrityError) and not store_outage(duplicate)
    holder.execute(f"PRAGMA max_page_count = {holder.execute('PRAGMA page_count').fetchone()[0]}")
    full = _raised(lambda: holder.execute("INSERT INTO t VALUES (2, ?)", ("z" * 100_000,)))
    assert full.sqlite_errorname == "SQLITE_FULL" and store_outage(full)
    holder.close()
    other.close()


def test_an_upstream_that_is_down_is_an_outage_a_final_answer_is_not(tmp_path):
    """After its retries, the HTTP client says SourceUnavailable for a refused connection
    and a plain SourceError for a 4xx answer."""
    import http.server

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404, "no such learner")

        def log_message(self, *args) -> None: ...

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    policy = RetryPolicy(retries=1, backoff_base=0.01, backoff_max=0.01)
    try:
        found = HttpClient(f"http://127.0.0.1:{server.server_port}/", policy=policy)
        answer = _raised(lambda: found.request("GET", "agent"))
        assert isinstance(answer, SourceError) and not isinstance(answer, SourceUnavailable)
        found.close()
    finally:
        server.shutdown()
        server.server_close()
    down = HttpClient(f"http://127.0.0.1:{_free_port()}/", policy=policy)
    assert isinstance(_raised(lambda: down.request("GET", "agent")), SourceUnavailable)
    down.close()


def test_patience_backs_off_exponentially_capped_jittered_within_the_budget():
    """Delays double up to the cap, jitter stays within [½, 1] of it, the budget ends it."""
    patience = Patience(budget=10, base=1, cap=4)
    delays = [patience.delay(now, 0.999) for now in (0, 1, 3, 7)]
    assert [round(d, 2) for d in delays] == [1.0, 2.0, 4.0, 3.0]  # the last: the budget left
    assert Patience(budget=10, base=1, cap=4).delay(0, 0.0) == 0.5
    assert patience.delay(10, 0.5) is None and patience.waited(10) == 10
    patience.reset()
    assert patience.delay(20, 0.999) == pytest.approx(1.0, abs=0.01)


class _SourceDownFor(ProgressHooks):
    """Takes the CaSS double down (503 to everything) after the 60th result, for *seconds*."""

    def __init__(self, cass, seconds: float) -> None:
        self.cass, self.seconds, self.seen, self.waits = cass, seconds, 0, []

    def advance(self, outcome) -> None:
        self.seen += 1
        if self.seen == 60:
            self.cass.add_fault(Fault.proxy(503))
            threading.Timer(self.seconds, self.cass.clear_faults).start()

    def waiting(self, what: str, seconds: float) -> None:
        self.waits.append((what, seconds))


def test_an_upstream_outage_is_waited_out(tmp_path, monkeypatch):
    """A CaSS server answering 503 for 4 s mid-batch, beyond the client's own retries:
    no learner in ERROR, the file source's root, and "waiting for the evidence source"."""
    referential = bundled_referential()
    files = write_cohort(tmp_path / "c.jsonl", referential, 200, seed=3, evidence_per_learner=8)
    records = [dict(r.fields) for _, agent, r in read_evidence_file(files.evidence) if agent]
    for name, value in {
        "CEREDIS_SOURCE_RATE": "1000",
        "CEREDIS_SOURCE_BURST": "50",
        "CEREDIS_SOURCE_RETRIES": "1",
        "CEREDIS_SOURCE_DEADLINE": "1",
    }.items():
        monkeypatch.setenv(name, value)  # fmt: skip

    def run(source: str, name: str, hooks=None):
        plan = plan_batch(agents_file=files.roster, source=source, workers=2,
                          database=f"sqlite:///{tmp_path / name}.sqlite",
                          ledger=tmp_path / f"{name}.jsonl")  # fmt: skip
        return run_batch(plan, hooks)

    expected = run(str(files.evidence), "file")
    competencies = {cid: c.cass_uuid for cid, c in referential.competencies.items()}
    with CassDouble.from_evidence(
        records, competencies=competencies, engine_key=generate_key(), encrypted=False, seed=1
    ) as cass:
        for name, value in cass.source_env(tmp_path / "engine.pem").items():
            monkeypatch.setenv(name, value)
        hooks = _SourceDownFor(cass, 4)
        report = run(cass.source_uri, "cass", hooks)
    assert report.failed == 0 and report.results_root == expected.results_root
    assert any(what == "the evidence source" and s >= 1 for what, s in hooks.waits)


def test_the_outage_budget_setting():
    """CEREDIS_OUTAGE_BUDGET sets the plan's budget (default 120 s); nonsense is refused."""
    from ceredis.errors import ConfigError
    from tests.builders import settings_from

    assert settings_from({}).outage_budget == 120
    assert settings_from({"CEREDIS_OUTAGE_BUDGET": "2.5"}).outage_budget == 2.5
    for bad in ("soon", "-1", "nan"):
        with pytest.raises(ConfigError, match="CEREDIS_OUTAGE_BUDGET: the outage budget"):
            settings_from({"CEREDIS_OUTAGE_BUDGET": bad})
