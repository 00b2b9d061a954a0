"""Batches against remote sources: the CaSS double with faults, a real Ralph LRS, secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ceredis.engine import run_batch
from ceredis.plan import plan_batch
from ceredis.referential import bundled_referential
from ceredis.sample import write_cohort
from ceredis.sources.files import read_evidence_file
from ceredis.sources.kbac import EngineKey
from doubles.cass_double import CassDouble, Fault
from doubles.kbac import generate_key
from doubles.ralph import RalphLRS
from doubles.xapi_fixtures import evidence_to_statements
from ledger.reader import read_ledger

RATE = 150.0  # requests/s for all workers together
BURST = 5
#: Seconds by which the CaSS double may journal a request late: it records arrivals, in a
#: test process that other tests keep busy (0.05 s was once exceeded under -n 2).
ARRIVAL_JITTER = 0.1
SECRETS = {
    "CEREDIS_XAPI_PASSWORD": "xapi-Pw-61d0c4e2",
    "CEREDIS_CASS_AUTHORIZATION": "Bearer cass-token-9a8e7f",
}
DB_PASSWORD = "db-Pw-27c6b1aa"


@pytest.fixture(scope="module")
def competencies() -> dict[str, str]:
    return {cid: c.cass_uuid for cid, c in bundled_referential().competencies.items()}


@pytest.fixture(scope="module")
def engine_key() -> EngineKey:
    return generate_key()


def cohort(folder: Path, agents: int, seed: int, per_learner: int = 20):
    files = write_cohort(
        folder / "cohort.jsonl",
        bundled_referential(),
        agents,
        seed=seed,
        evidence_per_learner=per_learner,
    )
    records = [dict(r.fields) for _, agent, r in read_evidence_file(files.evidence) if agent]
    return files, records


def batch(tmp_path: Path, name: str, source: str, roster: Path, workers: int = 2, **extra):
    plan = plan_batch(
        agents_file=roster,
        source=source,
        workers=workers,
        database=extra.pop("database", f"sqlite:///{tmp_path / name}.sqlite"),
        ledger=tmp_path / f"{name}.jsonl",
        **extra,
    )
    return run_batch(plan), plan


def ledger_results(path: Path) -> list[dict]:
    return [r.body for r in read_ledger(path) if r.kind == "record"]


def max_in_window(times: list[float], window: float) -> int:
    """The most request starts seen in any interval of *window* seconds."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.slow
def test_500_learners_through_faults_of_every_kind(tmp_path, monkeypatch, competencies, engine_key):
    """~5 % injected faults of every kind: every learner is OK or a clear ERROR, none lost,
    retries show in the journal, the shared rate limit holds, Retry-After 900 is capped."""
    files, records = cohort(tmp_path, 500, seed=21)
    for name, value in {
        "CEREDIS_SOURCE_RATE": str(RATE),
        "CEREDIS_SOURCE_BURST": str(BURST),
        "CEREDIS_SOURCE_READ_TIMEOUT": "1",
        "CEREDIS_SOURCE_DEADLINE": "15",
        "CEREDIS_SOURCE_RETRY_AFTER_CAP": "2",
    }.items():
        monkeypatch.setenv(name, value)
    faults = [
        Fault.cass_429(retry_after=1, probability=0.006),
        Fault.proxy(502, probability=0.006), Fault.proxy(504, probability=0.006),
        Fault.cass_500_search(route="search", probability=0.006),
        Fault.reset(probability=0.006), Fault.truncate(after_bytes=20, probability=0.006),
        Fault.hang(delay_s=3, probability=0.003), Fault.bad_json(probability=0.004),
        Fault.drop_results(keep=3, route="search", probability=0.006),
        Fault.latency(0.05, probability=0.005),
        Fault.cass_429(retry_after=900, nth=400, times=1),
    ]  # fmt: skip
    started = time.monotonic()
    with CassDouble.from_evidence(
        records, competencies=competencies, engine_key=engine_key, encrypted=False, seed=9
    ) as cass:
        cass.add_fault(*faults)
        for name, value in cass.source_env(tmp_path / "engine.pem").items():
            monkeypatch.setenv(name, value)
        report, plan = batch(tmp_path, "faulty", cass.source_uri, files.roster)
        journal = list(cass.journal)
    elapsed = time.monotonic() - started

    results = ledger_results(plan.ledger)
    assert [r["agentId"] for r in results] == files.roster.read_text().split()
    assert report.total == 500 and report.ok + report.skipped + report.failed == 500
    for record in results:
        if record["status"] == "ERROR":
            assert record["result"]["error"].startswith("evidence source: ")
    fired = {name for e in journal for name in e.faults}
    assert fired >= {
        "cass_429",
        "proxy_502",
        "proxy_504",
        "cass_500_search",
        "reset",
        "truncate",
        "hang",
        "bad_json",
        "drop_results",
        "latency",
    }
    assert len(journal) > 3 * 500  # retries: more requests than a clean run makes
    assert report.failed <= 5, [r["result"]["error"] for r in results if r["status"] == "ERROR"]
    capped = [r for r in results if "Retry-After" in (r["result"].get("error") or "")]
    assert len(capped) <= 1 and elapsed < 300  # 900 s were asked for; nobody waited them
    times = sorted(e.t for e in journal)
    for window in (0.5, 1.0, 5.0):
        assert max_in_window(times, window) <= RATE * (window + ARRIVAL_JITTER) + BURST


def test_same_results_root_from_jsonl_cass_and_ralph(
    tmp_path, monkeypatch, competencies, engine_key
):
    """One cohort served from a JSONL file, from CaSS (encrypted) and from a real Ralph LRS
    (scored on the local pool and on Dask) gives the same resultsRoot."""
    files, records = cohort(tmp_path, 40, seed=5)
    monkeypatch.setenv("CEREDIS_SOURCE_RATE", "500")
    from_file, _ = batch(tmp_path, "file", str(files.evidence), files.roster)

    with CassDouble.from_evidence(
        records, competencies=competencies, engine_key=engine_key, seed=2
    ) as cass:
        for name, value in cass.source_env(tmp_path / "engine.pem").items():
            monkeypatch.setenv(name, value)
        from_cass, _ = batch(tmp_path, "cass", cass.source_uri, files.roster)

    monkeypatch.setenv("CEREDIS_XAPI_USERNAME", "reader")
    monkeypatch.setenv("CEREDIS_XAPI_PASSWORD", SECRETS["CEREDIS_XAPI_PASSWORD"])
    with RalphLRS(
        evidence_to_statements(records), "reader", SECRETS["CEREDIS_XAPI_PASSWORD"]
    ) as lrs:
        from_ralph, _ = batch(tmp_path, "ralph", "xapi+" + lrs.base_url, files.roster)
        # The Dask executor (tests/test_dask.py) on this LRS, rather than start another.
        on_dask, _ = batch(
            tmp_path, "ralph-dask", "xapi+" + lrs.base_url, files.roster, executor="dask"
        )

    assert from_file.failed == 0 and from_file.ok > 30
    assert from_cass.results_root == from_file.results_root
    assert from_ralph.results_root == from_file.results_root
    assert on_dask.results_root == from_file.results_root


def test_a_learner_whose_worker_dies_twice_is_recorded_as_error(
    tmp_path, monkeypatch, competencies, engine_key
):
    """The learner in flight when its worker is SIGKILLed is retried once, then ERROR."""
    files, records = cohort(tmp_path, 5, seed=8)
    victim = "L00003"
    monkeypatch.setenv("CEREDIS_SOURCE_RATE", "500")
    with CassDouble.from_evidence(
        records, competencies=competencies, engine_key=engine_key, encrypted=False, seed=3
    ) as cass:
        cass.add_fault(Fault.latency(0.4))
        for name, value in cass.source_env(tmp_path / "engine.pem").items():
            monkeypatch.setenv(name, value)
        stop = threading.Event()
        killer = threading.Thread(target=_kill_when_fetched, args=(cass, victim, stop), daemon=True)
        killer.start()
        try:
            report, plan = batch(
                tmp_path, "deaths", cass.source_uri, files.roster, workers=1, chunksize=1
            )
        finally:
            stop.set()
    results = ledger_results(plan.ledger)
    assert [r["agentId"] for r in results] == files.roster.read_text().split()
    by_agent = {r["agentId"]: r for r in results}
    assert by_agent[victim]["result"]["error"] == (
        "worker process died while scoring this learner (twice); not retried"
    )
    assert by_agent[victim]["inputs"] is None
    assert all(r["status"] != "ERROR" for a, r in by_agent.items() if a != victim)
    assert report.failed == 1


def _kill_when_fetched(cass: CassDouble, agent: str, stop: threading.Event) -> None:
    """Each time the double receives the first request for *agent*'s Person, kill the
    pool's workers (the children of this process), at most twice."""
    seen = 0
    while not stop.is_set() and seen < 2:
        hits = [e for e in list(cass.journal) if agent in json.dumps(e.params)]
        if len(hits) > seen:
            seen = len(hits)
            for pid in _children():
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def ceredis_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ceredis ARGS` as a real process, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "ceredis", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _children() -> list[int]:
    """The pool's workers: this process's forked children, which share its command line
    (not the session's Ralph server, another child of this process)."""
    me = os.getpid()
    mine, found = Path(f"/proc/{me}/cmdline").read_bytes(), []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(b")", 1)[1].split()[1]) == me and cmdline == mine:
            found.append(int(entry))
    return found


@pytest.mark.postgres
def test_no_secret_reaches_the_ledger_report_logs_or_errors(
    tmp_path, pg_url, competencies, engine_key
):
    """With a database password, a CaSS token and an LRS password configured, a batch —
    including failing learners — writes none of them anywhere a person could read."""
    files, records = cohort(tmp_path, 12, seed=4)
    # PostgreSQL here trusts local users, so any password is accepted and must be hidden.
    database = pg_url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
    records[3]["rawScore"] = "not a number"  # one learner ERROR, with its message
    with CassDouble.from_evidence(
        records, competencies=competencies, engine_key=engine_key, seed=6
    ) as cass:
        cass.add_fault(Fault.proxy(503, route="search", probability=0.3))
        env = {
            **os.environ,
            **cass.source_env(tmp_path / "engine.pem"),
            **SECRETS,
            "CEREDIS_DATABASE_URL": database,
            "CEREDIS_SOURCE_RETRIES": "1",
            "CEREDIS_SOURCE_RATE": "500",
        }
        done = ceredis_cli(
            env,
            "batch",
            "--source",
            cass.source_uri,
            "--file",
            str(files.roster),
            "--ledger",
            str(tmp_path / "s.jsonl"),
        )
        bad = ceredis_cli(
            env,
            "batch",
            "--source",
            cass.source_uri,
            "--database",
            database.replace("127.0.0.1", "127.0.0.1:1"),
            "--all",
        )
        journal = json.dumps([vars(e) for e in cass.journal], default=str)
    assert done.returncode == 1 and bad.returncode == 2, (done.stderr, bad.stderr)
    texts = {
        "stdout": done.stdout + bad.stdout,
        "stderr": done.stderr + bad.stderr,
        "ledger": (tmp_path / "s.jsonl").read_text(),
        "report": (tmp_path / "s.report.json").read_text(),
        "journal": journal,
    }
    key_text = (tmp_path / "engine.pem").read_text()
    for where, text in texts.items():
        for secret in [DB_PASSWORD, *SECRETS.values(), key_text.splitlines()[1]]:
            assert secret not in text, f"a secret leaked into the {where}"
    assert "://postgres@127.0.0.1" in texts["stderr"]  # the URL, reduced
